"""The log format conmon writes (``--log-path k8s-file:<path>``), parsed (pure).

Each line is ``<timestamp> <stream> <tag> <data>``: an RFC 3339 timestamp with nanoseconds
and a numeric offset, ``stdout`` or ``stderr``, ``F`` (the data ends a line) or ``P`` (a
partial line: conmon split a long line or the process wrote no newline yet), and the data
without its newline. Joining ``P`` records with the following ``F`` record of the same stream
gives back the lines the process wrote; the logger builds ``docker logs`` (json-file
semantics: per-line timestamps, since/until/tail/follow) on top of this.
"""

from __future__ import annotations

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
