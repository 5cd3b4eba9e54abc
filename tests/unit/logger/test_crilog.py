from __future__ import annotations

from datetime import UTC, datetime

import pytest

from whaled.logger.crilog import join_lines, parse_line, parse_timestamp, timestamp_ns


def test_parse_line_as_conmon_writes_it() -> None:
    rec = parse_line(b"2026-11-24T12:54:36.213200483+00:00 stdout F hi there\n")
    assert rec is not None
    assert rec.stream == "stdout" and not rec.partial and rec.data == b"hi there"
    assert rec.timestamp == datetime(2026, 11, 24, 12, 54, 36, 213200, tzinfo=UTC)
    assert rec.nanos == 213200483


def test_parse_line_edge_cases() -> None:
    empty = parse_line(b"2026-11-24T12:54:36Z stderr F")
    assert empty is not None and empty.data == b"" and empty.nanos == 0
    assert parse_line(b"2026-11-24T12:54:36Z stdin F x") is None
    assert parse_line(b"2026-11-24T12:54:36Z stdout X x") is None
    assert parse_line(b"yesterday stdout F x") is None
    assert parse_line(b"garbage") is None


def test_timestamp_offsets() -> None:
    ts, nanos = parse_timestamp("2026-01-01T02:00:00.5+02:00")
    assert ts == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert nanos == 500_000_000
    with pytest.raises(ValueError):
        parse_timestamp("2026-01-01 00:00:00")


def test_join_partial_records() -> None:
    lines = [
        b"2026-01-01T00:00:01Z stdout P abc",
        b"2026-01-01T00:00:02Z stderr F err",
        b"2026-01-01T00:00:03Z stdout F def",
        b"2026-01-01T00:00:04Z stdout P tail",
    ]
    records = [r for r in (parse_line(x) for x in lines) if r is not None]
    out = list(join_lines(records))
    assert [(r.stream, r.data, r.partial) for r in out] == [
        ("stderr", b"err\n", False),
        ("stdout", b"abcdef\n", False),
        ("stdout", b"tail", True),
    ]
    assert out[1].timestamp.second == 1


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T12:54:36.213200483+00:00",
        "2026-11-24T12:54:36.213200483-05:30",
        "2026-01-01T02:00:00.5+02:00",
        "2026-11-24T12:54:36Z",
        "2026-11-24T12:54:36.1Z",
    ],
)
def test_timestamp_ns_agrees_with_parse_timestamp(text: str) -> None:
    ts, nanos = parse_timestamp(text)
    assert timestamp_ns(text.encode()) == int(ts.timestamp()) * 1_000_000_000 + nanos


@pytest.mark.parametrize(
    "text", [b"", b"garbage", b"2026-11-24T12:54:36.+00:00", b"2026-11-24T12:54:36.123x"]
)
def test_timestamp_ns_rejects_garbage(text: bytes) -> None:
    with pytest.raises(ValueError):
        timestamp_ns(text)
