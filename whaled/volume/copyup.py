"""Copy-up: the first mount of an empty volume gets the image's content at that path
(dockerd's ``CopyImagePathContent``): files, directories, symlinks, hard links, device
nodes and fifos, with owners, modes, times and xattrs. Iterative and fd-relative on both
sides (any depth the kernel allows; the destination keeps a bounded number of fds open)."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from whaled.osutil.tree import walk_fd

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: destination directories kept open below this depth; deeper ones are reopened via ".."
KEEP_OPEN = 64
_CHUNK = 1 << 20
_RANGE_CHUNK = 1 << 30
#: files at least this large have their data copied by worker threads (the copy syscalls
#: release the GIL, so several run at once); smaller ones are copied by the walker, where a
#: hand-off would cost more than it saves
PARALLEL_MIN_SIZE = 64 << 10
#: at most this many files are open and waiting for a worker (bounds open fds)
MAX_IN_FLIGHT = 64


def _workers() -> int:
    return max(2, min(4, os.cpu_count() or 1))


def _copy_xattrs(src_fd: int, dst_fd: int) -> None:
    try:
        names = os.listxattr(src_fd)
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.setxattr(dst_fd, name, os.getxattr(src_fd, name))


def _finish(fd: int, st: os.stat_result) -> None:
    """Owner, mode, xattrs and times of a copied file or directory (by fd)."""
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


class _Dest:
    """The destination directories from the top to where the copy is."""

    def __init__(self, top_fd: int) -> None:
        # (relative path, fd or None once closed, stat of the source dir or None for the top)
        self.levels: list[tuple[str, int | None, os.stat_result | None]] = [("", top_fd, None)]

    def parent_fd(self, path: str) -> int:
        parent = path.rpartition("/")[0]
        while self.levels[-1][0] != parent:
            self._leave()
        fd = self.levels[-1][1]
        assert fd is not None
        return fd

    def enter(self, path: str, fd: int, st: os.stat_result) -> None:
        self.levels.append((path, fd, st))
        deep = len(self.levels) - 2 - KEEP_OPEN
        if deep > 0:
            rel, old, old_st = self.levels[deep]
            if old is not None:
                os.close(old)
                self.levels[deep] = (rel, None, old_st)

    def _leave(self) -> None:
        _, fd, st = self.levels.pop()
        assert fd is not None
        try:
            prel, pfd, pst = self.levels[-1]
            if pfd is None:
                self.levels[-1] = (prel, os.open("..", _OPEN_DIR, dir_fd=fd), pst)
            if st is not None:
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))  # after its content
        finally:
            os.close(fd)

    def close(self) -> None:
        while len(self.levels) > 1:
            self._leave()


def copy_tree(src: str, dst: str) -> None:
    """Copy the content of directory ``src`` into the (empty) directory ``dst``."""
    src_fd = os.open(src, _OPEN_DIR)
    dst_fd = os.open(dst, _OPEN_DIR)
    dest = _Dest(dst_fd)
    links: dict[tuple[int, int], tuple[int, str]] = {}  # (dev, ino) → (dst dir fd dup, name)
    filler = _Filler()
    try:
        top_st = os.fstat(src_fd)
        for w in walk_fd(src_fd):
            st = w.st
            parent = dest.parent_fd(w.path)
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(w.name, 0o700, dir_fd=parent)
                fd = os.open(w.name, _OPEN_DIR, dir_fd=parent)
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(mode))
                sfd = os.open(w.name, _OPEN_DIR, dir_fd=w.parent_fd)
                try:
                    _copy_xattrs(sfd, fd)
                finally:
                    os.close(sfd)
                dest.enter(w.path, fd, st)
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                first_dir, first_name = links[key]
                os.link(first_name, w.name, src_dir_fd=first_dir, dst_dir_fd=parent)
                continue
            if stat.S_ISREG(mode):
                _copy_file(w.parent_fd, w.name, parent, st, filler)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(w.name, dir_fd=w.parent_fd), w.name, dir_fd=parent)
                os.chown(w.name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
                os.utime(
                    w.name,
                    ns=(st.st_atime_ns, st.st_mtime_ns),
                    dir_fd=parent,
                    follow_symlinks=False,
                )
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
                os.mknod(w.name, mode, st.st_rdev, dir_fd=parent)
                os.chown(w.name, st.st_uid, st.st_gid, dir_fd=parent, follow_symlinks=False)
                os.utime(w.name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=parent)
            else:
                continue  # sockets are not copied
            if st.st_nlink > 1:
                links[key] = (os.dup(parent), w.name)
        dest.close()
        filler.finish()
        os.fchown(dst_fd, top_st.st_uid, top_st.st_gid)
        os.fchmod(dst_fd, stat.S_IMODE(top_st.st_mode))
        os.utime(dst_fd, ns=(top_st.st_atime_ns, top_st.st_mtime_ns))
    finally:
        filler.finish(raise_errors=False)
        for fd, _ in links.values():
            os.close(fd)
        with contextlib.suppress(OSError):
            dest.close()
        os.close(src_fd)
        os.close(dst_fd)


def _copy_file(
    src_dir: int, name: str, dst_dir: int, st: os.stat_result, filler: _Filler
) -> None:
    """Create the file now (so hard links to it can follow at once) and fill it here or,
    when it is large, on a worker thread."""
    sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dfd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_dir
        )
    except BaseException:
        os.close(sfd)
        raise
    if st.st_size >= PARALLEL_MIN_SIZE:
        filler.submit(sfd, dfd, st)
    else:
        _fill(sfd, dfd, st)


def _fill(sfd: int, dfd: int, st: os.stat_result) -> None:
    """Data, xattrs, owner, mode and times of one file; closes both fds."""
    try:
        _copy_data(sfd, dfd, st.st_size)
        _copy_xattrs(sfd, dfd)
        _finish(dfd, st)
    finally:
        os.close(dfd)
        os.close(sfd)


class _Filler:
    """Worker threads that fill large files while the walker goes on; started on the
    first large file, at most ``MAX_IN_FLIGHT`` files waiting."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._futures: list[Future[None]] = []

    def submit(self, sfd: int, dfd: int, st: os.stat_result) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_workers(), thread_name_prefix="copyup")
        self._slots.acquire()
        try:
            future = self._pool.submit(_fill, sfd, dfd, st)
        except BaseException:
            self._slots.release()
            os.close(dfd)
            os.close(sfd)
            raise
        future.add_done_callback(lambda _f: self._slots.release())
        self._futures.append(future)
        if len(self._futures) > 4 * MAX_IN_FLIGHT:
            self._reap()

    def _reap(self) -> None:
        done = [f for f in self._futures if f.done()]
        self._futures = [f for f in self._futures if not f.done()]
        for f in done:
            f.result()  # the first failure stops the copy

    def finish(self, *, raise_errors: bool = True) -> None:
        """Wait for every submitted file (all fds are closed afterwards); re-raise the
        first failure unless ``raise_errors`` is false."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=True)
        futures, self._futures = self._futures, []
        if raise_errors:
            for f in futures:
                f.result()


def _copy_data(sfd: int, dfd: int, size: int) -> None:
    """In-kernel copy: copy_file_range (server-side or reflink where the file systems
    allow), else sendfile."""
    left = size
    use_range = True
    while left > 0:
        if use_range:
            try:
                n = os.copy_file_range(sfd, dfd, min(left, _RANGE_CHUNK))
            except OSError:
                use_range = False  # e.g. EXDEV across some file systems: sendfile does it
                continue
        else:
            n = os.sendfile(dfd, sfd, None, min(left, _CHUNK))
        if n == 0:
            break
        left -= n


def is_empty_dir(path: str) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None
