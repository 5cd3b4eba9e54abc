"""Safe tar unpacking for layers (we run as root), the streaming tar reader behind it and the
decompressing stream reader that feeds it.

Rules (the pure ones are functions at the top and unit tested):

- a member name is cleaned lexically (``./a//b`` → ``a/b``); an absolute name or one whose
  ``..`` climbs above the root is refused;
- every parent directory is opened component by component with ``O_NOFOLLOW`` relative to
  the layer root (``openat``-style); a parent that is a symlink is refused, so no write can
  follow a link out of the layer; missing parents are created ``0755``;
- a hard link's target is cleaned the same way (a leading ``/`` means the archive root) and
  must already exist in *this* layer, reached without symlinks;
- whiteouts: ``.wh.<name>`` becomes an overlay whiteout (char device 0/0), ``.wh..wh..opq``
  marks its directory opaque (xattr ``trusted.overlay.opaque=y``), other ``.wh..wh.`` meta
  entries are skipped;
- ``trusted.overlay.*`` xattrs inside the tar are dropped (they would steer overlayfs);
- ownership (numeric uid/gid), modes incl. setuid, mtimes, PAX ``SCHILY.xattr.*``, device
  nodes, fifos and symlinks are preserved; directory mtimes are set after their content;
- sparse members (GNU ``S`` / PAX ``GNU.sparse.*``) are refused: docker never writes them;
- bounds (:class:`TarLimits`, enforced by the parser, so for every tar that enters): at most
  :data:`MAX_ENTRIES` members, a name or link target of at most :data:`MAX_NAME` bytes and
  :data:`MAX_NAMES_TOTAL` bytes of names in all (what unpacking keeps in memory per member,
  and what a deep name costs in lookups, stays bounded); and, where a caller gives one, a
  bound on the *uncompressed* bytes of the stream (:func:`open_stream` ``limit``; callers
  pass :func:`space_budget` of where they write), which stops a decompression bomb with
  :class:`ArchiveLimit` before it fills the disk.

On any refusal :class:`UnsafeLayer` (InvalidParameter) is raised; the caller removes the
partial layer directory (see :mod:`whaled.image.layers`).

The reader (:class:`TarInput` + :class:`TarParser`) is our own rather than :mod:`tarfile`'s
stream mode: file content is handed on as slices of the chunks read from the source (no
per-block copies), and every byte that is *not* file content written to disk (headers,
padding, skipped data, the end-of-archive blocks and whatever follows them) can be passed to a
:class:`SplitRecorder`, which is how a layer's original tar is rebuilt byte for byte later
(:mod:`whaled.archive.tarstream`). Header blocks are decoded by ``tarfile.TarInfo.frombuf``;
PAX and GNU long-name records follow :mod:`tarfile`'s semantics, including its leniency: a
damaged or short header after the first member ends the archive.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import hashlib
import lzma
import os
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import zstandard

from whaled.archive.files import member_times_ns, set_xattrs, write_file
from whaled.errors import InvalidParameter, SystemFailure
from whaled.osutil.tree import remove_tree

CHUNK = 1 << 20
BLOCK = 512
WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
#: Largest PAX / GNU long-name record accepted (Go's archive/tar has the same limit).
MAX_SPECIAL_HEADER = 1 << 20
_XATTR_PAX_PREFIX = "SCHILY.xattr."
#: The largest uid, gid or device number a member may carry ((uid_t)-1 means "no change").
_MAX_ID = (1 << 32) - 2
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EMPTY = memoryview(b"")

Buffer = bytes | bytearray | memoryview


class UnsafeLayer(InvalidParameter):
    """A tar entry that would write outside the layer (or is otherwise refused)."""


class ArchiveLimit(InvalidParameter):
    """An archive beyond one of the bounds (entries, name length, uncompressed size). The
    caller removes what it wrote."""


#: Members of one archive. Real layers have tens of thousands (the largest a few hundred
#: thousand); each costs an inode and a little memory while unpacking.
MAX_ENTRIES = 1 << 20
#: Bytes of one member name or hard-link target: 16 x PATH_MAX, so trees thousands of levels
#: deep (which whaled unpacks, unlike dockerd) still fit; a deeper name costs a lookup per
#: level of each member that names it.
MAX_NAME = 1 << 16
#: Bytes of all member names of one archive (directory names are kept until the end, for
#: their times; a ``docker load`` keeps every name): a 10,000-level tree is 100 MiB of names.
MAX_NAMES_TOTAL = 1 << 28
#: Space left free by an unpack (see :func:`space_budget`): 5 % of the file system, at most
#: this much.
SPACE_RESERVE_MAX = 1 << 30


@dataclass(frozen=True, slots=True, kw_only=True)
class TarLimits:
    entries: int = MAX_ENTRIES
    name: int = MAX_NAME
    names_total: int = MAX_NAMES_TOTAL


DEFAULT_LIMITS = TarLimits()


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


# ----------------------------------------------------------------------------- pure rules


def detect_compression(head: bytes) -> Compression:
    """Compression from magic bytes (plain tar when nothing matches)."""
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Compression.ZSTD
    if head.startswith(b"BZh"):
        return Compression.BZIP2
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    return Compression.NONE


def looks_like_tar(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file, up to one block) starts a tar stream or
    a compressed stream: a valid header block, an all-zero block (an empty tar), or a
    compression magic."""
    if detect_compression(head) is not Compression.NONE:
        return True
    if len(head) < BLOCK:
        return False
    block = head[:BLOCK]
    if block.count(0) == BLOCK:
        return True
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def clean_path(name: str, *, what: str = "entry") -> tuple[str, ...]:
    """Lexically cleaned components of a member name; refuses absolute / escaping names."""
    if name.startswith("/"):
        raise UnsafeLayer(f"refusing to unpack {what} {name!r}: absolute path")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeLayer(
                    f"refusing to unpack {what} {name!r}: path escapes the layer root"
                )
            parts.pop()
        else:
            parts.append(comp)
    return tuple(parts)


def clean_link_target(linkname: str) -> tuple[str, ...]:
    """Hard-link targets name archive members: a leading ``/`` means the archive root."""
    return clean_path(linkname.lstrip("/"), what="hard link target")


@dataclass(frozen=True, slots=True, kw_only=True)
class Whiteout:
    """What a ``.wh.`` entry means: ``target`` is None for an opaque-directory marker."""

    parent: tuple[str, ...]
    target: str | None


def classify_whiteout(parts: tuple[str, ...]) -> Whiteout | None:
    """None if ``parts`` is not a whiteout; else what it whites out. Meta entries → target ''."""
    if not parts:
        return None
    base = parts[-1]
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    if base == WHITEOUT_OPAQUE:
        return Whiteout(parent=parts[:-1], target=None)
    if base.startswith(WHITEOUT_META_PREFIX):
        return Whiteout(parent=parts[:-1], target="")
    target = base[len(WHITEOUT_PREFIX) :]
    if target in ("", ".", ".."):
        raise UnsafeLayer(f"refusing whiteout entry {'/'.join(parts)!r}: invalid target")
    return Whiteout(parent=parts[:-1], target=target)


def pax_xattrs(pax_headers: Mapping[str, str]) -> dict[str, bytes]:
    """xattrs carried as PAX ``SCHILY.xattr.<name>`` records (raw bytes restored)."""
    out: dict[str, bytes] = {}
    for key, value in pax_headers.items():
        if key.startswith(_XATTR_PAX_PREFIX):
            out[key[len(_XATTR_PAX_PREFIX) :]] = value.encode("utf-8", "surrogateescape")
    return out


_PAX_RECORD = re.compile(rb"(\d+) ([^=]+)=")


def parse_pax(buf: bytes) -> dict[str, str]:
    """The records of a PAX extended header (``"%d %s=%s\\n"``), decoded like :mod:`tarfile`
    does (UTF-8, undecodable bytes kept as surrogates). Parsing stops at the first thing
    that is not a record (the NUL padding)."""
    out: dict[str, str] = {}
    pos = 0
    while True:
        m = _PAX_RECORD.match(buf, pos)
        if m is None:
            return out
        length = int(m.group(1))
        if length <= 0 or m.start(1) + length > len(buf) or m.end(2) + 1 > pos + length:
            raise InvalidParameter("invalid tar archive: bad PAX extended header")
        value = buf[m.end(2) + 1 : m.start(1) + length - 1]
        if b"\0" in m.group(2):  # Go's archive/tar refuses these too
            raise InvalidParameter("invalid tar archive: NUL byte in a PAX record's key")
        key = m.group(2).decode("utf-8", "surrogateescape")
        out[key] = value.decode("utf-8", "surrogateescape")
        pos += length


_PAX_INT = ("size", "uid", "gid")


def apply_pax(info: tarfile.TarInfo, headers: Mapping[str, str]) -> None:
    """Patch ``info`` with PAX values, as :mod:`tarfile` does (bad numbers become 0)."""
    for key, value in headers.items():
        if key == "path":
            info.name = value.rstrip("/")
        elif key == "linkpath":
            info.linkname = value
        elif key in _PAX_INT:
            try:
                setattr(info, key, int(value))
            except ValueError:
                setattr(info, key, 0)
        elif key == "mtime":
            try:
                info.mtime = float(value)
            except ValueError:
                info.mtime = 0
        elif key in ("uname", "gname"):
            setattr(info, key, value)
    info.pax_headers = dict(headers)


def budget_from_space(available: int, total: int) -> int:
    """Uncompressed bytes an unpack may produce on a file system with ``available`` of
    ``total`` bytes free: all but a reserve of 5 % (at most :data:`SPACE_RESERVE_MAX`), never
    less than half of what is free. An archive beyond that could not be unpacked anyway (or
    only by filling the disk that every container and the daemon's state share), so stopping
    there refuses nothing that could succeed; a bomb stops before the disk is full."""
    reserve = min(total // 20, SPACE_RESERVE_MAX)
    return max(available - reserve, available // 2, 0)


def space_budget(where: str | int) -> int:
    """:func:`budget_from_space` of the file system holding ``where`` (a path or an fd,
    ``O_PATH`` ones included)."""
    st = os.fstatvfs(where) if isinstance(where, int) else os.statvfs(where)
    return budget_from_space(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def too_large(limit: int) -> ArchiveLimit:
    return ArchiveLimit(
        f"refusing archive: its uncompressed content exceeds {limit} bytes "
        f"({_human(limit)}, the space the daemon may fill where it unpacks; "
        "a decompression bomb?)"
    )


# ----------------------------------------------------------------------------- stream input


class Readable(Protocol):
    """A blocking byte stream (request bodies, files)."""

    def read(self, n: int = -1, /) -> bytes: ...


class Source(Protocol):
    """What the readers here consume: like :class:`Readable` but any buffer may come back
    (slices of a larger chunk, handed on without a copy). Every ``Readable`` is a source."""

    def read(self, n: int = -1, /) -> Buffer: ...


class TarInput:
    """Buffered reading of a :class:`Source` in large chunks.

    ``read_some`` hands out slices (memoryviews) of the chunks as read — no copies for file
    content; ``read_exact`` assembles small exact reads (headers). ``on_data`` sees every
    chunk once, as it is read from the source (hashing). ``offset`` counts consumed bytes.
    """

    __slots__ = ("_buf", "_chunk", "_eof", "_on_data", "_raw", "offset")

    def __init__(
        self,
        raw: Source,
        *,
        chunk: int = CHUNK,
        on_data: Callable[[Buffer], object] | None = None,
    ) -> None:
        self._raw = raw
        self._chunk = chunk
        self._on_data = on_data
        self._buf = _EMPTY
        self._eof = False
        self.offset = 0

    def _read_raw(self) -> memoryview | None:
        if self._eof:
            return None
        data = self._raw.read(self._chunk)
        if not data:
            self._eof = True
            return None
        if self._on_data is not None:
            self._on_data(data)
        return memoryview(data)

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes without consuming them (fewer only at the end of the stream)."""
        while len(self._buf) < n:
            more = self._read_raw()
            if more is None:
                break
            self._buf = memoryview(b"".join((self._buf, more))) if self._buf else more
        return bytes(self._buf[:n])

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes (fewer only at the end of the stream)."""
        buf = self._buf
        if len(buf) >= n:
            self._buf = buf[n:]
            self.offset += n
            return bytes(buf[:n])
        parts: list[Buffer] = [buf] if buf else []
        have = len(buf)
        self._buf = _EMPTY
        while have < n:
            more = self._read_raw()
            if more is None:
                break
            take = n - have
            if len(more) > take:
                parts.append(more[:take])
                self._buf = more[take:]
                have = n
            else:
                parts.append(more)
                have += len(more)
        self.offset += have
        return b"".join(parts)

    def read_some(self, n: int) -> memoryview:
        """Between 1 and ``n`` bytes; empty only at the end of the stream."""
        buf = self._buf
        if not buf:
            more = self._read_raw()
            if more is None:
                return _EMPTY
            buf = more
        if len(buf) > n:
            self._buf = buf[n:]
            buf = buf[:n]
        else:
            self._buf = _EMPTY
        self.offset += len(buf)
        return buf

    def read(self, n: int = -1, /) -> Buffer:
        """``Source``: up to ``n`` bytes (a chunk when ``n`` < 0)."""
        return self.read_some(self._chunk if n < 0 else n)


class _Decompressing:
    """``Source`` of the decompressed bytes of ``raw``; each read returns at most ``n``
    bytes, so a small compressed input cannot blow up memory. Concatenated streams (several
    gzip members, pbzip2, multi-stream xz) are decoded one after the other; zero padding
    after the last one is ignored."""

    def __init__(self, raw: Source, compression: Compression) -> None:
        self._raw = raw
        self.compression = compression
        self._dec: Any = _new_decompressor(compression)
        self._tail = b""  # compressed input not fed yet (zlib's unconsumed tail, new members)
        self._more = False  # the decompressor holds output that was not returned yet
        self._between = False  # after the end of one compressed stream
        self._eof = False

    def read(self, n: int = -1, /) -> bytes:
        if n < 0:
            n = CHUNK
        try:
            while True:
                if self._more or self._tail:
                    data, self._tail = self._tail, b""
                else:
                    if self._eof:
                        return b""
                    data = bytes(self._raw.read(CHUNK))
                    if not data:
                        self._eof = True
                        if not self._between and hasattr(self._dec, "eof"):
                            raise InvalidParameter(
                                f"invalid {self.compression} layer data: "
                                "unexpected end of compressed data"
                            )
                        return b""
                if self._between:
                    data = data.lstrip(b"\0")
                    if not data:
                        continue
                    self._dec = _new_decompressor(self.compression)
                    self._between = False
                out = self._decompress(data, n)
                if out:
                    return out
        except InvalidParameter:
            raise
        except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError) as e:
            raise InvalidParameter(f"invalid {self.compression} layer data: {e}") from None
        except Exception as e:  # zstandard.ZstdError and friends
            raise InvalidParameter(f"invalid {self.compression} layer data: {e}") from None

    def _decompress(self, data: bytes, n: int) -> bytes:
        dec = self._dec
        c = self.compression
        if c is Compression.GZIP:
            out: bytes = dec.decompress(data, n)
            self._tail = dec.unconsumed_tail
            self._more = False
        elif c is Compression.ZSTD:
            out = dec.decompress(data)
            self._more = False
        else:
            out = dec.decompress(data, n)
            self._more = not dec.needs_input and not dec.eof
        if getattr(dec, "eof", False):
            self._more = False
            self._tail = bytes(dec.unused_data) + self._tail
            self._between = True
        return out


def _new_decompressor(c: Compression) -> Any:
    if c is Compression.GZIP:
        return zlib.decompressobj(wbits=31)
    if c is Compression.BZIP2:
        return bz2.BZ2Decompressor()
    if c is Compression.XZ:
        return lzma.LZMADecompressor()
    return zstandard.ZstdDecompressor().decompressobj()


class _Prefixed:
    """``Source``: ``head`` first, then the rest of ``raw``."""

    __slots__ = ("_head", "_raw")

    def __init__(self, head: bytes, raw: Source) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1, /) -> Buffer:
        head = self._head
        if head:
            if 0 <= n < len(head):
                self._head = head[n:]
                return head[:n]
            self._head = b""
            return head
        return self._raw.read(n)


class _Bounded:
    """``Source`` that raises :class:`ArchiveLimit` once more than ``limit`` bytes came out."""

    __slots__ = ("_limit", "_raw", "_seen")

    def __init__(self, raw: Source, limit: int) -> None:
        self._raw = raw
        self._limit = limit
        self._seen = 0

    def read(self, n: int = -1, /) -> Buffer:
        data = self._raw.read(n)
        self._seen += len(data)
        if self._seen > self._limit:
            raise too_large(self._limit)
        return data


def open_stream(
    raw: Source,
    *,
    on_raw: Callable[[Buffer], object] | None = None,
    limit: int | None = None,
) -> tuple[Source, Compression]:
    """The decompressed stream of ``raw`` (gzip / zstd / bzip2 / xz detected by magic bytes,
    plain passes through) and its compression. ``on_raw`` sees every byte read from ``raw``
    (the digest of a compressed blob). With ``limit``, reading more than that many
    (uncompressed) bytes raises :class:`ArchiveLimit`."""
    source, compression = _open_stream(raw, on_raw)
    if limit is not None:
        source = _Bounded(source, limit)
    return source, compression


def _open_stream(
    raw: Source, on_raw: Callable[[Buffer], object] | None
) -> tuple[Source, Compression]:
    src: Source = raw if on_raw is None else _Observed(raw, on_raw)
    head = bytes(src.read(8))
    while 0 < len(head) < 8:  # a source may return short reads
        more = src.read(8 - len(head))
        if not more:
            break
        head += bytes(more)
    compression = detect_compression(head)
    prefixed = _Prefixed(head, src)
    if compression is Compression.NONE:
        return prefixed, compression
    return _Decompressing(prefixed, compression), compression


class _Observed:
    __slots__ = ("_cb", "_raw")

    def __init__(self, raw: Source, cb: Callable[[Buffer], object]) -> None:
        self._raw = raw
        self._cb = cb

    def read(self, n: int = -1, /) -> Buffer:
        data = self._raw.read(n)
        if data:
            self._cb(data)
        return data


class LayerReader:
    """File-like reader of the *decompressed* tar stream of ``raw`` (``read(n)`` returns
    exactly ``n`` bytes until the end), for :mod:`tarfile` users.

    Detects gzip / zstd / bzip2 / xz by magic bytes. Hashes the decompressed bytes (the diff
    ID; not with ``hash_data=False``) and optionally the raw bytes (a compressed blob
    digest); ``tee`` receives every decompressed byte.
    """

    def __init__(
        self,
        raw: Readable,
        *,
        tee: Callable[[Buffer], Any] | None = None,
        hash_raw: bool = False,
        hash_data: bool = True,
    ) -> None:
        self._tee = tee
        self._hash = hashlib.sha256() if hash_data else None
        self._raw_hash = hashlib.sha256() if hash_raw else None
        self.uncompressed_size = 0
        on_raw = self._raw_hash.update if self._raw_hash is not None else None
        src, self.compression = open_stream(raw, on_raw=on_raw)
        self._input = TarInput(src, on_data=self._emit)

    def _emit(self, data: Buffer) -> None:
        if self._hash is not None:
            self._hash.update(data)
        if self._tee is not None:
            self._tee(data)
        self.uncompressed_size += len(data)

    def read(self, n: int = -1) -> bytes:
        if n >= 0:
            return self._input.read_exact(n)
        parts = []
        while data := self._input.read_some(CHUNK):
            parts.append(data)
        return b"".join(parts)

    def drain(self) -> None:
        """Consume the rest of the stream (padding after the end-of-archive blocks)."""
        while self._input.read_some(CHUNK):
            pass

    @property
    def diff_id(self) -> str:
        if self._hash is None:
            raise ValueError("this reader was made without hash_data")
        return "sha256:" + self._hash.hexdigest()

    @property
    def raw_digest(self) -> str | None:
        return None if self._raw_hash is None else "sha256:" + self._raw_hash.hexdigest()


# ----------------------------------------------------------------------------- tar parsing


class SplitRecorder(Protocol):
    """Receives what is needed to rebuild the tar stream later (see ``tarstream``)."""

    def raw(self, data: Buffer, /) -> None:
        """Bytes of the stream that are not kept as file content (headers, padding...)."""

    def file(self, path: str, size: int, /) -> None:
        """The next ``size`` bytes of the stream are the content of file ``path`` (relative
        to the unpack root)."""

    def shadow(self, dir_fd: int, name: str, path: str, /) -> None:
        """Entry ``name`` in ``dir_fd`` (``path`` relative to the unpack root) is about to be
        replaced: move it aside instead of deleting it (its content is still needed)."""


_DATA_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_NO_DATA_TYPES = (
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_LONG_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


def _truncated() -> InvalidParameter:
    return InvalidParameter("invalid tar archive: unexpected end of data")


class TarParser:
    """Members of a tar stream, one header at a time.

    After :meth:`next` returns a member that carries data (``data_left`` > 0), the caller
    may consume it with :meth:`copy_data` / :meth:`read_data`; whatever it leaves is skipped
    by the following :meth:`next`. With a ``recorder``, every byte read goes either to
    ``recorder.raw`` or (for :meth:`copy_data` with a path) is announced by
    ``recorder.file``. After the end, :meth:`drain` consumes what follows the archive.
    """

    def __init__(
        self,
        inp: TarInput,
        recorder: SplitRecorder | None = None,
        limits: TarLimits = DEFAULT_LIMITS,
    ) -> None:
        self.inp = inp
        self._rec = recorder
        self.data_left = 0
        self._pad = 0
        self._done = False
        self._global: dict[str, str] = {}
        self._limits = limits
        self.entries = 0
        self._names = 0

    def _check_limits(self, info: tarfile.TarInfo) -> None:
        limits = self._limits
        self.entries += 1
        if self.entries > limits.entries:
            raise ArchiveLimit(f"refusing archive: more than {limits.entries} entries")
        name = len(info.name.encode("utf-8", "surrogateescape"))
        link = len(info.linkname.encode("utf-8", "surrogateescape"))
        if max(name, link) > limits.name:
            what = "name" if name > limits.name else "link target"
            raise ArchiveLimit(
                f"refusing archive: entry {info.name[:64]!r}...: {what} longer than "
                f"{limits.name} bytes"
            )
        self._names += name + link
        if self._names > limits.names_total:
            raise ArchiveLimit(
                f"refusing archive: more than {limits.names_total} bytes of entry names"
            )

    def _raw(self, data: Buffer) -> None:
        if self._rec is not None and data:
            self._rec.raw(data)

    def _finish_member(self) -> None:
        left = self.data_left
        while left > 0:
            view = self.inp.read_some(min(left, CHUNK))
            if not view:
                raise _truncated()
            self._raw(view)
            left -= len(view)
        self.data_left = 0
        if self._pad:
            pad = self.inp.read_exact(self._pad)
            self._raw(pad)
            if len(pad) < self._pad:
                self._done = True  # tarfile accepts a stream cut in the last padding
            self._pad = 0

    def _special(self, size: int) -> bytes:
        if size < 0 or size > MAX_SPECIAL_HEADER:
            raise InvalidParameter("invalid tar archive: extended header too large")
        want = size + (-size) % BLOCK
        data = self.inp.read_exact(want)
        self._raw(data)
        if len(data) < want:
            raise _truncated()
        return data[:size]

    def next(self) -> tarfile.TarInfo | None:
        """The next member, or None at the end of the archive."""
        self._finish_member()
        if self._done:
            return None
        pax: dict[str, str] | None = None
        long_name: str | None = None
        long_link: str | None = None
        while True:
            at = self.inp.offset
            block = self.inp.read_exact(BLOCK)
            self._raw(block)
            pending = pax is not None or long_name is not None or long_link is not None
            if len(block) < BLOCK:
                if at == 0:
                    raise InvalidParameter(
                        "invalid tar archive: " + ("empty file" if not block else "truncated")
                    )
                if pending:
                    raise InvalidParameter("invalid tar archive: missing header after extension")
                self._done = True
                return None
            if block.count(0) == BLOCK:  # end-of-archive marker
                if pending:
                    raise InvalidParameter("invalid tar archive: missing header after extension")
                self._done = True
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                if at == 0 or pending:
                    raise InvalidParameter(f"invalid tar archive: {e}") from None
                self._done = True  # tarfile ends the archive at a damaged header
                return None
            typ = info.type
            if typ in _PAX_TYPES:
                records = parse_pax(self._special(info.size))
                if typ == tarfile.XGLTYPE:
                    self._global.update(records)
                else:
                    pax = {**(pax or {}), **records}
                continue
            if typ in _LONG_TYPES:
                value = self._special(info.size).split(b"\0", 1)[0]
                text = value.decode("utf-8", "surrogateescape")
                if typ == tarfile.GNUTYPE_LONGNAME:
                    long_name = text
                else:
                    long_link = text
                continue
            break
        if long_name is not None:
            info.name = long_name
        if long_link is not None:
            info.linkname = long_link
        headers = {**self._global, **(pax or {})}
        if headers:
            apply_pax(info, headers)
        if info.isdir():
            info.name = info.name.rstrip("/")
        if typ == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse.") for k in headers):
            raise InvalidParameter(
                f"invalid tar archive: sparse file {info.name!r} is not supported"
            )
        if info.size < 0:
            raise InvalidParameter(f"invalid tar archive: negative size for {info.name!r}")
        if typ == tarfile.SYMTYPE and not info.linkname:  # (symlink(2) refuses it: ENOENT)
            raise InvalidParameter(
                f"invalid tar archive: symbolic link {info.name!r} has no target"
            )
        if "\0" in info.name or "\0" in info.linkname:  # (PAX or GNU long names)
            raise InvalidParameter(f"invalid tar archive: NUL byte in the name {info.name!r}")
        for field_name, number in (
            ("uid", info.uid),
            ("gid", info.gid),
            ("device major", info.devmajor),
            ("device minor", info.devminor),
        ):
            if not 0 <= number <= _MAX_ID:  # (base-256 header fields and PAX can say anything)
                raise InvalidParameter(
                    f"invalid tar archive: {field_name} {number} of {info.name!r} is out of range"
                )
        self._check_limits(info)
        if typ in _NO_DATA_TYPES:
            self.data_left = 0
            self._pad = 0
        else:  # regular files and unknown types (tarfile treats those as data-carrying)
            self.data_left = info.size
            self._pad = (-info.size) % BLOCK
        return info

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while (member := self.next()) is not None:
            yield member

    def peek_data(self, n: int) -> bytes:
        """Up to ``n`` first bytes of the current member's data, not consumed."""
        return self.inp.peek(min(n, self.data_left))

    def read_data(self, n: int = CHUNK) -> memoryview:
        """Up to ``n`` bytes of the current member's data (empty when it is all read).
        Recorded as raw bytes."""
        if self.data_left <= 0:
            return _EMPTY
        view = self.inp.read_some(min(n, self.data_left))
        if not view:
            raise _truncated()
        self.data_left -= len(view)
        self._raw(view)
        return view

    def copy_data(self, fd: int, path: str | None = None) -> int:
        """Write the rest of the current member's data to ``fd``. With ``path`` (the file's
        path relative to the unpack root) the recorder is told where the bytes live instead
        of receiving them."""
        left = self.data_left
        if left <= 0:
            return 0
        rec = self._rec
        if rec is not None and path is not None:
            rec.file(path, left)
            rec = None
        inp = self.inp
        written = 0
        write = os.write
        while left > 0:
            view = inp.read_some(min(left, CHUNK))
            if not view:
                self.data_left = left
                raise _truncated()
            if rec is not None:
                rec.raw(view)
            n = len(view)
            done = write(fd, view)
            while done < n:
                done += write(fd, view[done:])
            left -= n
            written += n
        self.data_left = 0
        return written

    def drain(self) -> int:
        """Consume (and record) everything after the end of the archive; returns its size."""
        self._finish_member()
        total = 0
        while view := self.inp.read_some(CHUNK):
            self._raw(view)
            total += len(view)
        return total


@contextlib.contextmanager
def open_upload(stream: Readable, *, limit: int | None = None) -> Iterator[TarParser | None]:
    """A tar upload (plain, gzip, bzip2, xz, zstd) as a streaming :class:`TarParser`; None
    for an empty body (dockerd extracts nothing then). An upload that stops right after its
    last member's data, without the padding and end-of-archive blocks (the docker CLI sends
    build contexts so), ends there, as Go's archive/tar — dockerd's reader — lets it; data
    cut short is an error where it is read. ``limit``: see :func:`open_stream`."""
    source, _ = open_stream(stream, limit=limit)
    inp = TarInput(source)
    if not inp.peek(1):
        yield None
        return
    yield TarParser(inp)


# ----------------------------------------------------------------------------- unpacking


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackPolicy:
    """What the unpacker does besides the safety rules (which always apply)."""

    whiteouts: bool = True  # convert .wh. entries to overlay form
    owners: bool = True  # apply uid/gid
    xattrs: bool = True
    devices: bool = True  # allow char/block devices


LAYER_POLICY = UnpackPolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class UnpackResult:
    size: int  # bytes of regular-file content (hard links counted once)
    entries: int


class _Dirs:
    """Directory fds under one root, opened component by component with O_NOFOLLOW."""

    MAX = 512
    #: How many nearest ancestors ``get`` looks up in the cache before opening from the root.
    LOOKBACK = 8

    def __init__(self, root_fd: int, label: str) -> None:
        self.root_fd = root_fd
        self._cache: dict[tuple[str, ...], int] = {}
        self._label = label

    def close(self) -> None:
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def trim(self) -> None:
        """Bound the number of open fds; only called between members (no fd in use)."""
        if len(self._cache) >= self.MAX:
            self.close()

    def forget(self, prefix: tuple[str, ...]) -> None:
        n = len(prefix)
        for key in [k for k in self._cache if k[:n] == prefix]:
            os.close(self._cache.pop(key))

    def get(self, parts: tuple[str, ...], *, create: bool, entry: str) -> int:
        """The fd of directory ``parts`` (cached). Opened from the nearest cached ancestor
        one component at a time, without recursion and holding at most two fds on the way:
        only the directory asked for is cached, so any depth costs a bounded number of fds."""
        if not parts:
            return self.root_fd
        cached = self._cache.get(parts)
        if cached is not None:
            return cached
        start, fd = 0, self.root_fd
        for n in range(len(parts) - 1, max(0, len(parts) - self.LOOKBACK), -1):
            ancestor = self._cache.get(parts[:n])
            if ancestor is not None:
                start, fd = n, ancestor
                break
        owned: int | None = None
        try:
            for i in range(start, len(parts)):
                child = self._open_child(fd, parts, i, create=create, entry=entry)
                if owned is not None:
                    os.close(owned)
                owned = fd = child
        except BaseException:
            if owned is not None:
                os.close(owned)
            raise
        self._cache[parts] = fd
        return fd

    @staticmethod
    def _open_child(
        parent: int, parts: tuple[str, ...], i: int, *, create: bool, entry: str
    ) -> int:
        comp = parts[i]
        try:
            return os.open(comp, _OPEN_DIR, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(comp, 0o755, dir_fd=parent)
            return os.open(comp, _OPEN_DIR, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.lstat(comp, dir_fd=parent)
            where = "/".join(parts[: i + 1])
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeLayer(
                    f"refusing to unpack {entry!r}: parent {where!r} is a symbolic link"
                ) from None
            raise UnsafeLayer(
                f"refusing to unpack {entry!r}: parent {where!r} is not a directory"
            ) from None


def _proc_path(dir_fd: int, name: str) -> str:
    return f"/proc/self/fd/{dir_fd}/{name}"


class _Unpacker:
    """Applies members to a directory; see the module docstring for the rules."""

    def __init__(
        self,
        parser: TarParser,
        dirs: _Dirs,
        policy: UnpackPolicy,
        recorder: SplitRecorder | None,
    ) -> None:
        self.parser = parser
        self.dirs = dirs
        self.policy = policy
        self.recorder = recorder
        #: directories whose times are set at the end, by name ("" for the root): a joined
        #: name costs its length in memory, a tuple of its components far more
        self.deferred_dirs: list[tuple[str, tuple[int, int]]] = []

    def remove_existing(self, pfd: int, base: str, parts: tuple[str, ...]) -> os.stat_result | None:
        """Remove what a member replaces (something an earlier member of this tar made).
        With a recorder, files and directories are moved aside instead: their content is
        part of the original tar."""
        try:
            st = os.lstat(base, dir_fd=pfd)
        except FileNotFoundError:
            return None
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.recorder is not None and (is_dir or stat.S_ISREG(st.st_mode)):
            self.recorder.shadow(pfd, base, "/".join(parts))
        elif is_dir:
            remove_tree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)
        if is_dir:
            self.dirs.forget(parts)
        return st

    def member(self, member: tarfile.TarInfo) -> int:
        policy = self.policy
        dirs = self.dirs
        name = member.name
        parts = clean_path(name)
        if policy.whiteouts:
            wh = classify_whiteout(parts)
            if wh is not None:
                self._whiteout(wh, member, name)
                return 0
        times = member_times_ns(member)
        mode = member.mode & 0o7777
        xattrs = pax_xattrs(member.pax_headers) if policy.xattrs else {}

        if not parts:
            if not member.isdir():
                raise UnsafeLayer(
                    f"refusing to unpack {name!r}: the layer root must be a directory"
                )
            if policy.owners:
                os.fchown(dirs.root_fd, member.uid, member.gid)
            os.fchmod(dirs.root_fd, mode)
            set_xattrs(dirs.root_fd, xattrs, follow=False)
            self.deferred_dirs.append(("", times))
            return 0

        pfd = dirs.get(parts[:-1], create=True, entry=name)
        base = parts[-1]
        typ = member.type

        if typ == tarfile.DIRTYPE:
            try:
                st: os.stat_result | None = os.lstat(base, dir_fd=pfd)
            except FileNotFoundError:
                st = None
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self.remove_existing(pfd, base, parts)
                st = None
            if st is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _OPEN_DIR, dir_fd=pfd)
            try:
                if policy.owners:
                    os.fchown(fd, member.uid, member.gid)
                os.fchmod(fd, mode)
                set_xattrs(fd, xattrs, follow=False)
            finally:
                os.close(fd)
            self.deferred_dirs.append(("/".join(parts), times))
            return 0

        self.remove_existing(pfd, base, parts)

        if typ in _DATA_TYPES:
            path = "/".join(parts)
            write_file(
                pfd,
                base,
                lambda fd: self.parser.copy_data(fd, path),
                owner=(member.uid, member.gid) if policy.owners else None,
                mode=mode,
                xattrs=xattrs,
                times=times,
            )
            return member.size

        if typ == tarfile.SYMTYPE:
            os.symlink(member.linkname, base, dir_fd=pfd)
            if policy.owners:
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            if xattrs:
                set_xattrs(_proc_path(pfd, base), xattrs, follow=False)
            os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            return 0

        if typ == tarfile.LNKTYPE:
            tparts = clean_link_target(member.linkname)
            if not tparts:
                raise UnsafeLayer(f"refusing hard link {name!r}: target is the layer root")
            try:
                tpfd = dirs.get(tparts[:-1], create=False, entry=name)
                os.lstat(tparts[-1], dir_fd=tpfd)
            except FileNotFoundError:
                raise UnsafeLayer(
                    f"refusing hard link {name!r} -> {member.linkname!r}: "
                    "target is not in this layer"
                ) from None
            try:
                os.link(tparts[-1], base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
            except PermissionError:
                raise UnsafeLayer(
                    f"refusing hard link {name!r} -> {member.linkname!r}: cannot link a directory"
                ) from None
            return 0

        if typ in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            if typ == tarfile.FIFOTYPE:
                kind = stat.S_IFIFO
            elif not policy.devices:
                raise UnsafeLayer(f"refusing device node {name!r} here")
            else:
                kind = stat.S_IFCHR if typ == tarfile.CHRTYPE else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
            if policy.owners:
                os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
            # Just created by us in a private directory: not a symlink, chmod cannot be
            # redirected.
            os.chmod(base, mode, dir_fd=pfd)
            set_xattrs(_proc_path(pfd, base), xattrs, follow=False)
            os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            return 0

        raise UnsafeLayer(f"refusing to unpack {name!r}: unsupported tar entry type {typ!r}")

    def _whiteout(self, wh: Whiteout, member: tarfile.TarInfo, name: str) -> None:
        pfd = self.dirs.get(wh.parent, create=True, entry=name)
        if wh.target is None:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if wh.target == "":
            return  # other aufs meta entries (.wh..wh.plnk etc.) carry nothing for overlay
        self.remove_existing(pfd, wh.target, (*wh.parent, wh.target))
        os.mknod(wh.target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        os.chown(wh.target, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory times, once all content is in place. Order does not matter then (a
        time set on a directory does not touch its parent): they go top-down, so each
        directory's parent is the one just opened, whatever the depth; a directory named
        twice keeps the times of its first entry."""
        dirs = self.dirs
        times_of: dict[str, tuple[int, int]] = {}
        for name, times in self.deferred_dirs:
            times_of.setdefault(name, times)
        self.deferred_dirs.clear()
        for name, times in times_of.items():
            parts = tuple(name.split("/")) if name else ()
            dirs.trim()
            try:
                if parts:
                    pfd = dirs.get(parts[:-1], create=False, entry="/".join(parts))
                    os.utime(parts[-1], ns=times, dir_fd=pfd, follow_symlinks=False)
                else:
                    os.utime(dirs.root_fd, ns=times)
            except FileNotFoundError:
                pass  # removed by a later entry


def unpack_tar(
    parser: TarParser,
    dest: str,
    policy: UnpackPolicy = LAYER_POLICY,
    recorder: SplitRecorder | None = None,
) -> UnpackResult:
    """Unpack the members ``parser`` yields into the existing directory ``dest`` (stops at
    the end of the archive; what follows it is left to the caller, see ``drain``).

    ``recorder`` must be the one ``parser`` records to: the unpacker tells it where file
    content lives and asks it to move replaced entries aside. Raises UnsafeLayer /
    InvalidParameter for refused or malformed input, SystemFailure for host errors. Leaves
    cleanup of ``dest`` to the caller.
    """
    root_fd = os.open(dest, _OPEN_DIR)
    dirs = _Dirs(root_fd, dest)
    unpacker = _Unpacker(parser, dirs, policy, recorder)
    size = 0
    entries = 0
    current = ""
    try:
        while (member := parser.next()) is not None:
            current = member.name
            entries += 1
            dirs.trim()
            size += unpacker.member(member)
        unpacker.finish()
    except InvalidParameter:
        raise
    except OSError as e:
        if e.errno in (errno.ENAMETOOLONG, errno.EEXIST, errno.EPERM, errno.EISDIR):
            raise InvalidParameter(f"cannot unpack entry {current!r}: {e.strerror}") from None
        raise SystemFailure(f"failed to unpack layer entry {current!r}: {e}") from e
    finally:
        dirs.close()
        os.close(root_fd)
    return UnpackResult(size=size, entries=entries)


def is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
