"""Copy-up: the first mount of an empty volume gets the image's content at that path
(dockerd's ``CopyImagePathContent``): files, directories, symlinks, hard links, device
nodes and fifos, with owners, modes, times and xattrs. Iterative and fd-relative on both
sides (any depth the kernel allows; the destination keeps a bounded number of fds open)."""

from __future__ import annotations

import contextlib
import os
import stat

from whaled.osutil.tree import walk_fd

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: destination directories kept open below this depth; deeper ones are reopened via ".."
KEEP_OPEN = 64
_CHUNK = 1 << 20
_RANGE_CHUNK = 1 << 30


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
                _copy_file(w.parent_fd, w.name, parent, st)
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
        os.fchown(dst_fd, top_st.st_uid, top_st.st_gid)
        os.fchmod(dst_fd, stat.S_IMODE(top_st.st_mode))
        os.utime(dst_fd, ns=(top_st.st_atime_ns, top_st.st_mtime_ns))
    finally:
        for fd, _ in links.values():
            os.close(fd)
        with contextlib.suppress(OSError):
            dest.close()
        os.close(src_fd)
        os.close(dst_fd)


def _copy_file(src_dir: int, name: str, dst_dir: int, st: os.stat_result) -> None:
    sfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        dfd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dst_dir
        )
        try:
            _copy_data(sfd, dfd, st.st_size)
            _copy_xattrs(sfd, dfd)
            _finish(dfd, st)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


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
