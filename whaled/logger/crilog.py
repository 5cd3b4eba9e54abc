"""The log format conmon writes (``--log-path k8s-file:<path>``), parsed (pure).

Each line is ``<timestamp> <stream> <tag> <data>``: an RFC 3339 timestamp with nanoseconds
and a numeric offset, ``stdout`` or ``stderr``, ``F`` (the data ends a line) or ``P`` (a
partial line: conmon split a long line or the process wrote no newline yet), and the data
without its newline. Joining ``P`` records with the following ``F`` record of the same stream
gives back the lines the process wrote; the logger builds ``docker logs`` (json-file
semantics: per-line timestamps, since/until/tail/follow) on top of this (``reader``).

``parse_line``/``join_lines`` build ``datetime`` values; ``timestamp_ns`` is the fast path
the reader uses for millions of lines (unix nanoseconds, the date part cached).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

_TS = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecord:
    timestamp: datetime
    nanos: int  # nanoseconds of the second (datetime keeps only microseconds)
    stream: str
    partial: bool
    data: bytes


def parse_timestamp(text: str) -> tuple[datetime, int]:
    m = _TS.match(text)
    if m is None:
        raise ValueError(f"bad timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "").ljust(9, "0")
    nanos = int(frac)
    zone = m.group(8)
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    ts = datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=tz)
    return ts.astimezone(UTC), nanos


def _epoch_seconds(base: bytes, zone: bytes) -> int:
    ts, _ = parse_timestamp((base + zone).decode("ascii", errors="replace"))
    return calendar.timegm(ts.utctimetuple())


# (date and time to the second + offset) → unix seconds: a log holds runs of lines from the
# same second, so this hits nearly always. Bounded: cleared when it grows past the limit.
_SECONDS: dict[bytes, int] = {}
_SECONDS_LIMIT = 4096
_FRACTION = re.compile(rb"\.(\d{1,9})")


def _seconds(base: bytes, zone: bytes) -> int:
    key = base + zone
    try:
        return _SECONDS[key]
    except KeyError:
        pass
    if len(_SECONDS) >= _SECONDS_LIMIT:
        _SECONDS.clear()
    value = _SECONDS[key] = _epoch_seconds(base, zone)
    return value


def timestamp_ns(text: bytes) -> int:
    """Unix nanoseconds of a record's timestamp (``ValueError`` if malformed). conmon writes
    ``2026-11-24T12:54:36.213200483+00:00``: nine digits and a numeric offset."""
    if len(text) == 35 and text[19] == 0x2E and text[20:29].isdigit():
        return _seconds(text[:19], text[29:]) * 1_000_000_000 + int(text[20:29])
    m = _FRACTION.match(text, 19)
    if m is None:
        return _seconds(text[:19], text[19:]) * 1_000_000_000
    return _seconds(text[:19], text[m.end() :]) * 1_000_000_000 + int(m.group(1).ljust(9, b"0"))


def parse_line(line: bytes) -> LogRecord | None:
    """One log line (with or without its newline); ``None`` if it is malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    stream = parts[1].decode(errors="replace")
    tag = parts[2]
    if stream not in ("stdout", "stderr") or tag not in (b"F", b"P"):
        return None
    try:
        ts, nanos = parse_timestamp(parts[0].decode(errors="replace"))
    except ValueError:
        return None
    return LogRecord(
        timestamp=ts,
        nanos=nanos,
        stream=stream,
        partial=tag == b"P",
        data=parts[3] if len(parts) == 4 else b"",
    )


def join_lines(records: Iterable[LogRecord]) -> Iterator[LogRecord]:
    """Whole lines: partial records joined with the next full record of their stream; the
    result's ``data`` ends with ``\\n`` and carries the first record's timestamp."""
    pending: dict[str, list[LogRecord]] = {}
    for rec in records:
        parts = pending.setdefault(rec.stream, [])
        parts.append(rec)
        if rec.partial:
            continue
        first = parts[0]
        yield LogRecord(
            timestamp=first.timestamp,
            nanos=first.nanos,
            stream=rec.stream,
            partial=False,
            data=b"".join(p.data for p in parts) + b"\n",
        )
        parts.clear()
    for parts in pending.values():
        if parts:
            first = parts[0]
            yield LogRecord(
                timestamp=first.timestamp,
                nanos=first.nanos,
                stream=first.stream,
                partial=True,
                data=b"".join(p.data for p in parts),
            )
