"""Build contexts kept for the next build: a rebuild whose files did not change is recognised
while its context streams in, without writing the files again or hashing them again.

dockerd unpacks every context into a fresh directory and hashes every file a COPY names,
so a cached rebuild of a 50 MB context writes 50 MB and reads it back through SHA-256.
whaled keeps the last few unpacked contexts (:class:`ContextCache`, bounded in count and
bytes, emptied by ``docker builder prune`` and at start). While a new context is unpacked,
a regular file that arrives with the same path, size, mode, owner and mtime as a file of a
kept context is checked against it as its data arrives; when the content is the same, the
new context gets a hard link to the kept file (nothing is written) and inherits the content
digest computed for it by an earlier COPY. A file that differs is written and hashed when a
COPY needs it.

How the content is checked depends on the size:

- up to :data:`HOLD_MAX`, by fingerprint: the keyed 128-bit XXH3 of the content, computed
  for every such file as it is unpacked (a linked file inherits it). The incoming data is
  hashed and held (no copy: the views the tar parser hands out) until the member ends; the
  kept file is not read at all. Reading 50 MB of kept files back from the page cache cost
  ~11 ms of the unpacking thread per cached build of the bench's context; hashing the
  incoming data costs ~2 ms. The key is random per daemon start and lives only in memory,
  so a collision cannot be prepared; by chance one is a 2**-128 event. (Whoever can send a
  build can also run a privileged container: the fingerprint guards against accidents,
  there is no privilege to guard.)
- above it, byte for byte with the kept file, read chunk by chunk beside the incoming data
  (nothing is held); where they differ, the part that matched is copied from the kept file.

Neither is a check of times or sizes alone: the docker CLI sends whole seconds, so a file
edited twice in a second keeps its metadata.

Kept files are never written after their context was unpacked (the builder only reads a
context), so a hard link shares nothing that can change, and a fingerprint stays true.
Each :class:`Context` records the facts of the files it was given, their fingerprints and
the digests known for them; the cache is in memory only, and the directory it lives in is
cleared at start.
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import xxhash

from whaled.archive.files import CHUNK, write_file
from whaled.archive.tarsafe import TarParser
from whaled.osutil.tree import remove_tree

#: contexts kept at most, and their bytes at most (a context larger than this is not kept)
MAX_KEPT = 4
MAX_BYTES = 1 << 30

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
#: regular files up to this size are checked by fingerprint, their data held meanwhile;
#: larger ones byte for byte against the kept file
HOLD_MAX = 8 << 20

#: open directories of kept contexts one writer holds at most before it closes them all
_DIR_CACHE_MAX = 256


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What a regular file of a context was unpacked with (its tar header's facts)."""

    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass(eq=False, slots=True)
class Context:
    """One unpacked context: its directory, the facts of its regular files (by path
    relative to ``root``), the fingerprints of those checked by fingerprint and the
    SHA-256 digests of content known for them.

    ``digests`` is filled by whoever hashes a file (COPY's cache key) and read by the next
    build that reuses the file; single dict stores are atomic, so hashing threads may add
    to it concurrently."""

    root: str
    files: dict[str, FileFacts] = field(default_factory=dict)
    fingerprints: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    size: int = 0
    #: builds that unpack (compare against this context) right now; it is not removed then
    users: int = 0
    reused: int = 0
    created: float = field(default_factory=time.time)
    #: when a build last unpacked it or compared against it; how many builds did
    last_used: float = field(default_factory=time.time)
    usage_count: int = 1

    def make_dir(self) -> None:
        """Make the (empty) directory of a context :meth:`ContextCache.open` gave."""
        os.mkdir(self.root, 0o700)

    def relative(self, host_path: str) -> str | None:
        """``host_path`` relative to the root, or None when it is not inside."""
        prefix = self.root + os.sep
        return host_path[len(prefix) :] if host_path.startswith(prefix) else None

    def known_digest(self, host_path: str) -> bytes | None:
        rel = self.relative(host_path)
        return None if rel is None else self.digests.get(rel)

    def remember_digest(self, host_path: str, digest: bytes) -> None:
        rel = self.relative(host_path)
        if rel is not None and rel in self.files:
            self.digests[rel] = digest


class ContextCache:
    """The kept contexts, most recently used first."""

    def __init__(
        self,
        root: str,
        *,
        max_kept: int = MAX_KEPT,
        max_bytes: int = MAX_BYTES,
        hold_max: int = HOLD_MAX,
    ):
        self.root = root
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.hold_max = hold_max
        self._kept: list[Context] = []
        self._lock = threading.Lock()
        self._seed = secrets.randbits(64)  # the fingerprints' key
        os.makedirs(root, 0o700, exist_ok=True)

    def open(self) -> tuple[Context, ContextWriter]:
        """A new, empty context and the writer that unpacks its regular files, comparing
        them with the kept contexts (which stay while the writer is open). No I/O: whoever
        unpacks makes its directory first (:meth:`Context.make_dir`), so that the event
        loop can open one without a trip to a thread."""
        ctx = Context(os.path.join(self.root, "context-" + secrets.token_hex(8)))
        now = time.time()
        with self._lock:
            candidates = list(self._kept)
            for kept in candidates:
                kept.users += 1
                kept.last_used = now
                kept.usage_count += 1
        writer = ContextWriter(
            ctx, candidates, self._release, seed=self._seed, hold_max=self.hold_max
        )
        return ctx, writer

    def keep(self, ctx: Context) -> None:
        """The build is over: ``ctx`` becomes the first candidate for later builds; the
        least recently used contexts beyond the bounds are removed."""
        if ctx.size > self.max_bytes:
            remove_tree(ctx.root, ignore_errors=True)
            return
        with self._lock:
            self._kept.insert(0, ctx)
            gone = self._over_bounds()
        for old in gone:
            remove_tree(old.root, ignore_errors=True)

    def prune(self) -> list[Context]:
        """``docker builder prune``: remove every kept context not in use; those removed."""
        with self._lock:
            gone = [c for c in self._kept if c.users == 0]
            self._kept = [c for c in self._kept if c.users > 0]
        for old in gone:
            remove_tree(old.root, ignore_errors=True)
        return gone

    def kept(self) -> list[Context]:
        with self._lock:
            return list(self._kept)

    def _release(self, candidates: list[Context]) -> None:
        with self._lock:
            for kept in candidates:
                kept.users -= 1
            gone = self._over_bounds()
        for old in gone:
            remove_tree(old.root, ignore_errors=True)

    def _over_bounds(self) -> list[Context]:
        """Take the contexts beyond the bounds (least recently used first, never one in
        use) off the list; the caller removes their directories. Under the lock."""
        gone: list[Context] = []
        total = sum(c.size for c in self._kept)
        for old in reversed(list(self._kept)):
            if len(self._kept) <= self.max_kept and total <= self.max_bytes:
                break
            if old.users == 0:
                self._kept.remove(old)
                total -= old.size
                gone.append(old)
        return gone


@dataclass(frozen=True, slots=True)
class _Place:
    """Where the file being unpacked goes, and how it is written there with its
    metadata (``write(fill)``)."""

    dir_fd: int
    name: str
    write: Callable[[Callable[[int], object]], None]


class ContextWriter:
    """Makes the regular files of one context being unpacked (the ``files`` hook of
    ``container.archive.extract_to``): a hard link to a kept file when the content is the
    same, else a new file. Used from the one thread that unpacks."""

    def __init__(
        self,
        ctx: Context,
        candidates: list[Context],
        release: Callable[[list[Context]], None],
        *,
        seed: int,
        hold_max: int,
    ) -> None:
        self.ctx = ctx
        self._candidates = candidates
        self._release = release
        self._seed = seed
        self._hold_max = hold_max
        self._dirs: dict[tuple[int, tuple[str, ...]], int] = {}
        self._buf = bytearray(CHUNK)
        self._closed = False

    def __call__(
        self,
        dir_fd: int,
        name: str,
        parts: tuple[str, ...],
        member: tarfile.TarInfo,
        tar: TarParser,
        *,
        owner: tuple[int, int],
        mode: int,
        xattrs: Mapping[str, bytes],
        times: tuple[int, int],
    ) -> None:
        ctx = self.ctx
        rel = "/".join(parts)
        facts = FileFacts(member.size, mode, owner[0], owner[1], times[1])
        ctx.files.pop(rel, None)  # a member named twice: the last one counts
        ctx.fingerprints.pop(rel, None)
        ctx.digests.pop(rel, None)
        fingerprint = xxhash.xxh3_128(seed=self._seed) if member.size <= self._hold_max else None
        place = _Place(
            dir_fd,
            name,
            functools.partial(
                write_file, dir_fd, name, owner=owner, mode=mode, xattrs=xattrs, times=times
            ),
        )
        kept: Context | None = None
        if xattrs or not any(c.files.get(rel) == facts for c in self._candidates):
            place.write(_fill((), tar, fingerprint))
        elif fingerprint is not None:
            kept = self._by_fingerprint(parts, facts, tar, fingerprint, place)
        else:
            kept = self._byte_for_byte(parts, facts, tar, place)
        if kept is not None:
            digest = kept.digests.get(rel)
            if digest is not None:
                ctx.digests[rel] = digest
            ctx.reused += 1
        if fingerprint is not None:
            ctx.fingerprints[rel] = fingerprint.digest()
        ctx.files[rel] = facts
        ctx.size += member.size

    def close(self) -> None:
        """Close the kept contexts' directories and let them go (once)."""
        if self._closed:
            return
        self._closed = True
        self._close_dirs()
        self._release(self._candidates)

    # -- helpers

    def _by_fingerprint(
        self,
        parts: tuple[str, ...],
        facts: FileFacts,
        tar: TarParser,
        fingerprint: xxhash.xxh3_128,
        place: _Place,
    ) -> Context | None:
        """Read and hash the member's data, holding it; link the file from a kept one with
        that fingerprint, else write what was held. The kept context linked from."""
        held = _hold(tar, fingerprint)
        found = self._find(parts, facts, fingerprint.digest())
        if found is not None and self._link(found[1], parts[-1], place.dir_fd, place.name):
            return found[0]
        place.write(_fill(held, tar, None))
        return None

    def _byte_for_byte(
        self, parts: tuple[str, ...], facts: FileFacts, tar: TarParser, place: _Place
    ) -> Context | None:
        """Compare the member's data with a kept file's as it is read: link the file from
        it when every byte is the same, else write it (what matched copied from the kept
        file). The kept context linked from."""
        found = self._find(parts, facts, None)
        kept_fd = -1 if found is None else _open_file(found[1], parts[-1])
        if found is None or kept_fd < 0:
            place.write(tar.copy_data)
            return None
        try:
            same, pending = self._compare(tar, kept_fd, facts.size)
            if pending is None and self._link(found[1], parts[-1], place.dir_fd, place.name):
                return found[0]
            place.write(_resume(kept_fd, same, pending, tar))
            return None
        finally:
            os.close(kept_fd)

    def _find(
        self, parts: tuple[str, ...], facts: FileFacts, fingerprint: bytes | None
    ) -> tuple[Context, int] | None:
        """The most recent kept context with a file of these facts (and this fingerprint,
        unless None) at ``parts``, and its directory's fd, after checking what is on disk."""
        rel = "/".join(parts)
        for kept in self._candidates:
            if kept.files.get(rel) != facts or (
                fingerprint is not None and kept.fingerprints.get(rel) != fingerprint
            ):
                continue
            kept_dir = self._dir(kept, parts[:-1])
            if kept_dir is None:
                continue
            try:
                st = os.stat(parts[-1], dir_fd=kept_dir, follow_symlinks=False)
            except OSError:
                continue
            if (
                st.st_size == facts.size
                and st.st_mode & 0o7777 == facts.mode
                and stat.S_ISREG(st.st_mode)
                and (st.st_uid, st.st_gid) == (facts.uid, facts.gid)
                and st.st_mtime_ns == facts.mtime_ns
            ):
                return kept, kept_dir
        return None

    def _dir(self, kept: Context, parts: tuple[str, ...]) -> int | None:
        """The kept context's directory ``parts``, opened without following symlinks."""
        key = (id(kept), parts)
        fd = self._dirs.get(key)
        if fd is not None:
            return fd
        if len(self._dirs) >= _DIR_CACHE_MAX:
            self._close_dirs()
        try:
            fd = os.open(kept.root, _DIR)
            for part in parts:
                nxt = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = nxt
        except OSError:
            if fd is not None:
                os.close(fd)
            return None
        self._dirs[key] = fd
        return fd

    def _close_dirs(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def _compare(self, tar: TarParser, fd: int, size: int) -> tuple[int, bytes | None]:
        """Read the member's data, comparing it with the kept file's: (bytes that were the
        same, the first chunk that was not or None when all were)."""
        buf = self._buf
        whole = memoryview(buf)
        same = 0
        while same < size:
            view = tar.read_data(CHUNK)
            n = len(view)
            got = os.preadv(fd, [whole[:n]], same)
            if got != n or not buf.startswith(view):  # buf[:n] == view, without a copy
                return same, bytes(view)
            same += n
        return same, None

    @staticmethod
    def _link(kept_dir: int, kept_name: str, dir_fd: int, name: str) -> bool:
        try:
            os.link(kept_name, name, src_dir_fd=kept_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
        except OSError as e:
            if e.errno in (errno.EMLINK, errno.EXDEV, errno.EPERM, errno.ENOENT):
                return False  # written instead
            raise
        return True


def _resume(
    kept_fd: int, same: int, pending: bytes | None, tar: TarParser
) -> Callable[[int], None]:
    """The ``fill`` of a file whose first ``same`` bytes are those of the kept file, then
    ``pending`` (already read from the tar), then the rest of the member's data."""

    def fill(fd: int) -> None:
        copied = 0
        while copied < same:
            n = os.copy_file_range(kept_fd, fd, same - copied, copied)
            if n <= 0:
                break
            copied += n
        while copied < same:  # copy_file_range gave up (another file system...)
            chunk = os.pread(kept_fd, min(CHUNK, same - copied), copied)
            if not chunk:
                raise OSError(errno.EIO, "a kept context file shrank while it was copied")
            _write_all(fd, memoryview(chunk))
            copied += len(chunk)
        if pending:
            _write_all(fd, memoryview(pending))
        tar.copy_data(fd)

    return fill


def _open_file(dir_fd: int, name: str) -> int:
    """``name`` in ``dir_fd`` opened for reading (never through a symlink), or -1."""
    try:
        return os.open(name, _FILE, dir_fd=dir_fd)
    except OSError:
        return -1


def _hold(tar: TarParser, fingerprint: xxhash.xxh3_128) -> list[memoryview]:
    """The rest of the member's data, added to ``fingerprint``: the tar parser's views,
    held without a copy (the parser hands out views of what it read, never reused)."""
    held: list[memoryview] = []
    while view := tar.read_data(CHUNK):
        fingerprint.update(view)
        held.append(view)
    return held


def _fill(
    held: Sequence[memoryview], tar: TarParser, fingerprint: xxhash.xxh3_128 | None
) -> Callable[[int], None]:
    """The ``fill`` of a new file: the data already read (``held``), then the rest of the
    member's data, added to ``fingerprint`` (when there is one) as it is written."""

    def fill(fd: int) -> None:
        for view in held:
            _write_all(fd, view)
        while view := tar.read_data(CHUNK):
            if fingerprint is not None:
                fingerprint.update(view)
            _write_all(fd, view)

    return fill


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]
