"""Pure framing of hijacked streams (attach, exec start, start -a): Docker's multiplexed
frames, the stream content types, detach keys and their scanner, and finding what a client
sent after its request in the raw bytes of the connection. The I/O is in
:mod:`whaled.api.hijack`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from whaled.api.versions import ApiVersion
from whaled.errors import InvalidParameter

RAW_STREAM: Final = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM: Final = "application/vnd.docker.multiplexed-stream"
#: Stream numbers in multiplexed frames.
STDIN: Final = 0
STDOUT: Final = 1
STDERR: Final = 2
DEFAULT_DETACH_KEYS: Final = "ctrl-p,ctrl-q"
#: The API version from which a non-TTY stream is labelled multiplexed (dockerd).
MULTIPLEXED_CONTENT_TYPE_SINCE: Final[ApiVersion] = (1, 42)

_FRAME_HEADER = struct.Struct(">BxxxL")
_MAX_FRAME = 0xFFFFFFFF


# ------------------------------------------------------------------ pure helpers


def mux_frame(stream: int, data: bytes) -> bytes:
    """One multiplexed-stream frame: ``[stream, 0, 0, 0, len (uint32 BE)] + data``."""
    if stream not in (STDIN, STDOUT, STDERR):
        raise ValueError(f"invalid stream number {stream}")
    if len(data) > _MAX_FRAME:
        raise ValueError("frame payload larger than 4 GiB")
    return _FRAME_HEADER.pack(stream, len(data)) + data


def stream_content_type(*, tty: bool, upgrade: bool, api_version: ApiVersion) -> str:
    """dockerd's choice: multiplexed only for an upgraded non-TTY stream from API 1.42 on."""
    if upgrade and not tty and api_version >= MULTIPLEXED_CONTENT_TYPE_SINCE:
        return MULTIPLEXED_STREAM
    return RAW_STREAM


_CTRL_NAMES: Final = "@abcdefghijklmnopqrstuvwxyz[\\]^_"


def parse_detach_keys(spec: str) -> bytes:
    """Docker's detach-keys format (``term.ToBytes``) to the byte sequence.

    Comma-separated keys: one character (its byte), ``ctrl-@``, ``ctrl-a`` … ``ctrl-z``,
    ``ctrl-[``, ``ctrl-\\``, ``ctrl-]``, ``ctrl-^``, ``ctrl-_`` (codes 0-31) or ``DEL``
    (127). An empty spec means the default, ``ctrl-p,ctrl-q``.
    """
    if not spec:
        spec = DEFAULT_DETACH_KEYS
    codes = bytearray()
    for key in spec.split(","):
        raw = key.encode("utf-8", "surrogateescape")
        if len(raw) == 1:
            codes += raw
        elif key.startswith("ctrl-") and len(key) == 6 and key[5] in _CTRL_NAMES:
            codes.append(_CTRL_NAMES.index(key[5]))
        elif key == "DEL":
            codes.append(127)
        else:
            raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
    return bytes(codes)


def detacher_for(keys: bytes, *, tty: bool, stdin: bool) -> DetachScanner | None:
    """The scanner for a stream's stdin, or None when the detach keys do not apply.

    dockerd looks for the detach keys only with a TTY: without one, stdin is data (any
    binary input may hold a ctrl-p ctrl-q pair) and passes through untouched."""
    if not (tty and stdin and keys):
        return None
    return DetachScanner(keys)


class DetachScanner:
    """Finds the detach sequence in a client's stdin, as dockerd's escape proxy does.

    :meth:`feed` takes the next stdin chunk and returns the bytes to pass on to the process
    and whether the sequence is complete. A partial match at the end of a chunk is held back
    and released (ahead of the next bytes) when the sequence breaks; on a complete match the
    sequence and everything after it are dropped, and every later call returns
    ``(b"", True)``. Like dockerd, the byte that breaks a partial match is not itself taken
    as the start of a new match (``ctrl-p ctrl-p ctrl-q`` does not detach), and a partial
    match still held at EOF is dropped (see :attr:`pending`).
    """

    __slots__ = ("_detached", "_keys", "_pos")

    def __init__(self, keys: bytes) -> None:
        self._keys = keys
        self._pos = 0
        self._detached = False

    @property
    def detached(self) -> bool:
        return self._detached

    @property
    def pending(self) -> bytes:
        """The held-back partial match."""
        return self._keys[: self._pos]

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        if self._detached:
            return b"", True
        keys = self._keys
        pos = self._pos
        if not keys or (pos == 0 and keys[0] not in data):
            return data, False
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if pos == 0:
                j = data.find(keys[0], i)
                if j < 0:
                    out += data[i:]
                    break
                out += data[i:j]
                i = j
            byte = data[i]
            i += 1
            if byte == keys[pos]:
                pos += 1
                if pos == len(keys):
                    self._pos = 0
                    self._detached = True
                    return bytes(out), True
            else:
                out += keys[:pos]
                out.append(byte)
                pos = 0
        self._pos = pos
        return bytes(out), False


def bytes_after_request(
    raw: bytes,
    *,
    method: str,
    target: str,
    version: tuple[int, int],
    raw_headers: Sequence[tuple[bytes, bytes]],
    body_length: int,
) -> bytes | None:
    """What follows one request in ``raw`` (recent bytes of its connection), or None.

    The request is found by its request line; of several occurrences the last whose header
    block matches ``raw_headers`` wins (an earlier identical request on a keep-alive
    connection came first). ``body_length`` is its ``Content-Length`` body.
    """
    line = f"{method} {target} HTTP/{version[0]}.{version[1]}\r\n".encode(
        "utf-8", "surrogateescape"
    )
    wanted = [(name.lower(), value.strip(b" \t")) for name, value in raw_headers]
    end = len(raw)
    while (start := raw.rfind(line, 0, end)) >= 0:
        end = start
        block_start = start + len(line)
        if raw.startswith(b"\r\n", block_start):
            block_end, lines = block_start, []
        else:
            block_end = raw.find(b"\r\n\r\n", block_start)
            if block_end < 0:
                continue
            lines = raw[block_start:block_end].split(b"\r\n")
        seen = []
        for header in lines:
            name, sep, value = header.partition(b":")
            if not sep:
                break
            seen.append((name.lower(), value.strip(b" \t")))
        if seen != wanted:
            continue
        body_end = block_end + (2 if block_end == block_start else 4) + body_length
        if body_end > len(raw):
            return None
        return raw[body_end:]
    return None
