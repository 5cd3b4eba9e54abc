"""Helpers for logger tests: CRI records as conmon writes them, a writer that behaves like
conmon (append; ``reopen`` puts a fresh file at ``path``), and a reference reading of a log
built from ``crilog.parse_line`` / ``join_lines`` to compare the reader with."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from whaled.logger.crilog import LogRecord, parse_line

BASE_NS = 1_795_524_876_000_000_000  # 2026-11-24T12:54:36Z


def stamp(ns: int, zone: str = "+00:00") -> str:
    """``ns`` (unix) as conmon writes it, in UTC or another ``±hh:mm`` offset."""
    offset = 0
    if zone != "Z" and zone != "+00:00":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs + offset))
    return f"{text}.{frac:09d}{zone}"


def record(stream: str, data: bytes | str, ns: int, *, partial: bool = False) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return f"{stamp(ns)} {stream} {'P' if partial else 'F'} ".encode() + data + b"\n"


class Conmon:
    """Writes records to ``path`` like conmon: ``reopen`` replaces ``path`` by a new file
    (``path.tmp`` renamed over it) and goes on writing there."""

    def __init__(self, path: str, start_ns: int = BASE_NS) -> None:
        self.path = path
        self.ns = start_ns
        self._f = open(path, "ab")

    def tick(self) -> int:
        self.ns += 1000
        return self.ns

    def write(self, stream: str, data: bytes | str, *, partial: bool = False) -> None:
        self.raw(record(stream, data, self.tick(), partial=partial))

    def line(self, text: str, stream: str = "stdout") -> None:
        self.write(stream, text)

    def raw(self, data: bytes) -> None:
        self._f.write(data)
        self._f.flush()

    def reopen(self) -> None:
        self._f.close()
        tmp = self.path + ".tmp"
        self._f = open(tmp, "wb")
        os.rename(tmp, self.path)

    async def areopen(self) -> None:
        self.reopen()

    def close(self) -> None:
        self._f.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class Ref:
    stream: str
    last_ns: int
    data: bytes
    end: int  # where it ends: the number of its last record in the log
    unfinished: bool = False


def _ns(rec: LogRecord) -> int:
    return int(rec.timestamp.timestamp()) * 1_000_000_000 + rec.nanos


def reference(files: Iterable[bytes]) -> list[Ref]:
    """Every entry of a log (its files' contents, oldest first), the slow and obvious way:
    partial records joined with the next full record of their stream; lines left
    unfinished at the end come last, in the order they ended."""
    pending: dict[str, list[tuple[int, LogRecord]]] = {}
    out: list[Ref] = []
    n = 0
    for content in files:
        for line in content.split(b"\n"):
            rec = parse_line(line)
            if rec is None:
                continue
            n += 1
            parts = pending.setdefault(rec.stream, [])
            parts.append((n, rec))
            if rec.partial:
                continue
            out.append(
                Ref(
                    stream=rec.stream,
                    last_ns=_ns(rec),
                    data=b"".join(p.data for _, p in parts) + b"\n",
                    end=n,
                )
            )
            parts.clear()
    rest = [
        Ref(
            stream=parts[0][1].stream,
            last_ns=_ns(parts[-1][1]),
            data=b"".join(p.data for _, p in parts),
            end=parts[-1][0],
            unfinished=True,
        )
        for parts in pending.values()
        if parts
    ]
    return out + sorted(rest, key=lambda r: r.last_ns)


def select(
    entries: Sequence[Ref],
    *,
    stdout: bool = True,
    stderr: bool = True,
    since_ns: int = 0,
    until_ns: int = 0,
    tail: int | None = None,
) -> list[tuple[str, int, bytes]]:
    """What ``read_logs`` must return for these options: the selected streams; of the
    complete lines those before the first one completed after ``until_ns``, of the
    unfinished ones those whose last piece is not after it; then the last ``tail`` of
    these by where they end in the log; then those from ``since_ns`` on. An entry's time is
    that of its last record."""
    chosen = [e for e in entries if (stdout, stderr)[e.stream == "stderr"]]
    if until_ns:
        kept = []
        for e in chosen:
            if e.last_ns <= until_ns:
                kept.append(e)
            elif not e.unfinished:
                kept += [u for u in chosen if u.unfinished and u.last_ns <= until_ns]
                break
        chosen = kept
    if tail is not None and tail >= 0:
        last = sorted(chosen, key=lambda e: e.end)[-tail:] if tail else []
        chosen = [e for e in chosen if e in last]
    return [(e.stream, e.last_ns, e.data) for e in chosen if e.last_ns >= since_ns]
