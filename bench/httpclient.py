"""A small HTTP/1.1 client on raw asyncio streams over a unix socket, and a load generator.

Keep-alive connections, one request in flight per connection (no pipelining), responses with
``Content-Length``, chunked bodies or read-to-close. It is deliberately minimal so that the
client costs as little as possible; the floor figure (the same client against a trivial server
answering the same bytes) shows its ceiling on the machine at hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass


class HTTPError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes  # status line + headers + body exactly as received (chunked stays chunked)


def build_request(method: str, path: str, body: bytes = b"", content_type: str = "") -> bytes:
    """The request bytes: HTTP/1.1, keep-alive, ``Host: docker`` (as the docker CLI sends)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: whaled-bench\r\n"
    if body or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body)}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a response head (ending in CRLF CRLF)."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise HTTPError(f"bad status line: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if sep:
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return int(parts[1]), headers


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head)
    raw = [head]
    body = b""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        pass
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        raw.append(body)
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            raw.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers, then the empty line
                while True:
                    t = await reader.readuntil(b"\r\n")
                    raw.append(t)
                    if t == b"\r\n":
                        break
                break
            data = await reader.readexactly(size + 2)
            raw.append(data)
            chunks.append(data[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.read()
        raw.append(body)
    return Response(status=status, headers=headers, body=body, raw=b"".join(raw))


async def fetch(sock: str, method: str, path: str, timeout: float = 30.0) -> Response:
    """One request on a fresh connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(sock), timeout)
    try:
        writer.write(build_request(method, path))
        return await asyncio.wait_for(read_response(reader, method), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def fetch_sync(sock: str, method: str, path: str, timeout: float = 30.0) -> Response:
    return asyncio.run(fetch(sock, method, path, timeout))


class _Target:
    """The load on one server: ``concurrency`` keep-alive connections that send only while
    the target is active (so targets never compete for the CPU with each other)."""

    def __init__(self, sock: str, request: bytes, concurrency: int, expect_status: int) -> None:
        self.sock = sock
        self.request = request
        self.expect_status = expect_status
        self.active = asyncio.Event()
        self.stop = False
        self.count = 0
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(concurrency)]

    async def _worker(self) -> None:
        reader, writer = await asyncio.open_unix_connection(self.sock)
        try:
            while True:
                await self.active.wait()
                if self.stop:
                    return
                writer.write(self.request)
                resp = await read_response(reader)
                if resp.status != self.expect_status:
                    raise HTTPError(f"status {resp.status}: {resp.body[:200]!r}")
                self.count += 1
                if resp.headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader, writer = await asyncio.open_unix_connection(self.sock)
        finally:
            writer.close()

    def failure(self) -> str | None:
        for t in self.tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                return f"load worker failed: {t.exception()!r}"
        return None

    async def window(self, settle: float, window: float) -> float:
        """Activate, let ``settle`` seconds pass, count for ``window`` seconds, deactivate."""
        self.active.set()
        await asyncio.sleep(settle)
        c0, t0 = self.count, time.perf_counter()
        await asyncio.sleep(window)
        c1, t1 = self.count, time.perf_counter()
        self.active.clear()
        return (c1 - c0) / (t1 - t0)

    async def close(self) -> None:
        self.stop = True
        self.active.set()
        _, pending = await asyncio.wait(self.tasks, timeout=10)
        for t in pending:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _load(
    socks: dict[str, str],
    request: bytes,
    concurrency: int,
    samples: int,
    window: float,
    warmup: float,
    expect_status: int,
    settle: float,
) -> dict[str, list[float] | str]:
    targets = {
        name: _Target(sock, request, concurrency, expect_status) for name, sock in socks.items()
    }
    out: dict[str, list[float] | str] = {name: [] for name in targets}
    live = list(targets)
    try:
        for name in live:
            await targets[name].window(0.0, warmup)
        for i in range(samples):
            # Round robin, rotating who goes first, so drift hits every target alike.
            order = live[i % len(live) :] + live[: i % len(live)] if live else []
            for name in order:
                rps = await targets[name].window(settle, window)
                failed = targets[name].failure()
                result = out[name]
                if failed is not None:
                    out[name] = failed
                    live.remove(name)
                elif isinstance(result, list):
                    result.append(rps)
    finally:
        await asyncio.gather(*(t.close() for t in targets.values()))
    return out


def measure_rps_interleaved(
    socks: dict[str, str],
    path: str,
    concurrency: int,
    samples: int,
    window: float = 0.5,
    warmup: float = 0.2,
    expect_status: int = 200,
    settle: float = 0.03,
) -> dict[str, list[float] | str]:
    """Requests/s of ``GET path`` with ``concurrency`` keep-alive connections per target.

    One target is loaded at a time: after a ``warmup`` window each, ``samples`` rounds in
    which every target gets one ``window`` (after ``settle`` seconds to reach steady state).
    Returns per target the samples, or the error text if its load failed."""
    return asyncio.run(
        _load(
            socks, build_request("GET", path), concurrency, samples, window, warmup,
            expect_status, settle,
        )
    )  # fmt: skip


def measure_rps(
    sock: str,
    path: str,
    concurrency: int,
    samples: int,
    window: float = 0.5,
    warmup: float = 0.2,
    expect_status: int = 200,
) -> list[float]:
    """``measure_rps_interleaved`` for one server; raises ``HTTPError`` if the load fails."""
    res = measure_rps_interleaved({"t": sock}, path, concurrency, samples, window, warmup,
                                  expect_status)["t"]  # fmt: skip
    if isinstance(res, str):
        raise HTTPError(res)
    return res


async def _latencies(sock: str, request: bytes, samples: int, expect_status: int) -> list[float]:
    reader, writer = await asyncio.open_unix_connection(sock)
    out: list[float] = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            writer.write(request)
            resp = await read_response(reader)
            out.append((time.perf_counter() - t0) * 1000.0)
            if resp.status != expect_status:
                raise HTTPError(f"status {resp.status}: {resp.body[:200]!r}")
            if resp.headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_unix_connection(sock)
    finally:
        writer.close()
    return out


def measure_latency_ms(
    sock: str, path: str, samples: int, warmup: int = 2, expect_status: int = 200
) -> list[float]:
    """Per-request latency (ms) of sequential ``GET path`` on one keep-alive connection."""
    req = build_request("GET", path)
    asyncio.run(_latencies(sock, req, warmup, expect_status))
    return asyncio.run(_latencies(sock, req, samples, expect_status))
