"""Build contexts kept for the next build: a rebuild whose files did not change is recognised
while its context streams in, without writing the files again or hashing them again.

dockerd unpacks every context into a fresh directory and hashes every file a COPY names,
so a cached rebuild of a 50 MB context writes 50 MB and reads it back through SHA-256.
whaled keeps the last few unpacked contexts (:class:`ContextCache`, bounded in count and
bytes, emptied by ``docker builder prune`` and at start). While a new context is unpacked,
a regular file that arrives with the same path, size, mode, owner and mtime as a file of a
kept context is compared byte for byte with it as its data arrives; when every byte is the
same, the new context gets a hard link to the kept file (nothing is written) and inherits
the content digest computed for it by an earlier COPY. A file that differs is written
(the part that matched is copied from the kept file) and hashed when a COPY needs it.

The comparison is of content, never of times or sizes alone: the docker CLI sends whole
seconds, so a file edited twice in a second keeps its metadata.

Kept files are never written after their context was unpacked (the builder only reads a
context), so a hard link shares nothing that can change. Each :class:`Context` records the
facts of the files it was given and the digests known for them; the cache is in memory
only, and the directory it lives in is cleared at start.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from whaled.archive.files import CHUNK, write_file
from whaled.archive.tarsafe import TarParser
from whaled.osutil.tree import remove_tree

#: contexts kept at most, and their bytes at most (a context larger than this is not kept)
MAX_KEPT = 4
MAX_BYTES = 1 << 30

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
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
    relative to ``root``) and the SHA-256 digests of content known for them.

    ``digests`` is filled by whoever hashes a file (COPY's cache key) and read by the next
    build that reuses the file; single dict stores are atomic, so hashing threads may add
    to it concurrently."""

    root: str
    files: dict[str, FileFacts] = field(default_factory=dict)
    digests: dict[str, bytes] = field(default_factory=dict)
    size: int = 0
    #: builds that unpack (compare against this context) right now; it is not removed then
    users: int = 0
    reused: int = 0
    created: float = field(default_factory=time.time)
    #: when a build last unpacked it or compared against it; how many builds did
    last_used: float = field(default_factory=time.time)
    usage_count: int = 1

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

    def __init__(self, root: str, *, max_kept: int = MAX_KEPT, max_bytes: int = MAX_BYTES):
        self.root = root
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self._kept: list[Context] = []
        self._lock = threading.Lock()
        os.makedirs(root, 0o700, exist_ok=True)

    def open(self) -> tuple[Context, ContextWriter]:
        """A new, empty context and the writer that unpacks its regular files, comparing
        them with the kept contexts (which stay while the writer is open)."""
        ctx = Context(tempfile.mkdtemp(prefix="context-", dir=self.root))
        now = time.time()
        with self._lock:
            candidates = list(self._kept)
            for kept in candidates:
                kept.users += 1
                kept.last_used = now
                kept.usage_count += 1
        return ctx, ContextWriter(ctx, candidates, self._release)

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


class ContextWriter:
    """Makes the regular files of one context being unpacked (the ``files`` hook of
    ``container.archive.extract_to``): a hard link to a kept file when the content is the
    same, else a new file. Used from the one thread that unpacks."""

    def __init__(
        self,
        ctx: Context,
        candidates: list[Context],
        release: Callable[[list[Context]], None],
    ) -> None:
        self.ctx = ctx
        self._candidates = candidates
        self._release = release
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
        rel = "/".join(parts)
        facts = FileFacts(member.size, mode, owner[0], owner[1], times[1])
        self.ctx.files.pop(rel, None)  # a member named twice: the last one counts
        self.ctx.digests.pop(rel, None)
        found = None if xattrs else self._find(parts, rel, facts)
        if found is None:
            write_file(
                dir_fd, name, tar.copy_data, owner=owner, mode=mode, xattrs=xattrs, times=times
            )
        else:
            kept, kept_dir, kept_fd = found
            try:
                same, pending = self._compare(tar, kept_fd, member.size)
                if pending is None and self._link(kept_dir, parts[-1], dir_fd, name):
                    digest = kept.digests.get(rel)
                    if digest is not None:
                        self.ctx.digests[rel] = digest
                    self.ctx.reused += 1
                else:
                    write_file(
                        dir_fd,
                        name,
                        _resume(kept_fd, same, pending, tar),
                        owner=owner,
                        mode=mode,
                        xattrs=xattrs,
                        times=times,
                    )
            finally:
                os.close(kept_fd)
        self.ctx.files[rel] = facts
        self.ctx.size += member.size

    def close(self) -> None:
        """Close the kept contexts' directories and let them go (once)."""
        if self._closed:
            return
        self._closed = True
        self._close_dirs()
        self._release(self._candidates)

    # -- helpers

    def _find(
        self, parts: tuple[str, ...], rel: str, facts: FileFacts
    ) -> tuple[Context, int, int] | None:
        """The most recent kept context with a file of these facts at ``rel``, opened
        (its directory's fd, the file's fd), after checking what is on disk."""
        for kept in self._candidates:
            if kept.files.get(rel) != facts:
                continue
            kept_dir = self._dir(kept, parts[:-1])
            if kept_dir is None:
                continue
            try:
                fd = os.open(parts[-1], _FILE, dir_fd=kept_dir)
            except OSError:
                continue
            st = os.fstat(fd)
            if (
                st.st_size == facts.size
                and st.st_mode & 0o7777 == facts.mode
                and stat.S_ISREG(st.st_mode)
                and (st.st_uid, st.st_gid) == (facts.uid, facts.gid)
                and st.st_mtime_ns == facts.mtime_ns
            ):
                return kept, kept_dir, fd
            os.close(fd)
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
            os.write(fd, chunk)
            copied += len(chunk)
        if pending:
            view = memoryview(pending)
            while view:
                view = view[os.write(fd, view) :]
        tar.copy_data(fd)

    return fill
