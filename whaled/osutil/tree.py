"""Directory trees of any depth: walked and removed without recursion, through directory fds.

A container can build a tree deeper than Python's recursion limit and longer than PATH_MAX
(4096 bytes; ``mkdir -p d/d/d/...`` needs only ``mkdirat``). So nothing here recurses, and
walks go ``openat``-relative to directory fds instead of handing the kernel full paths
(:func:`lstat_under` tries the full path first and walks only when it is too long).
:func:`sweep` is the start-up helper that removes crash leftovers and never stops a start.

- Symlinks are never followed: directories are opened with ``O_NOFOLLOW`` and checked to be
  the inode ``lstat`` saw (a directory swapped for a link in between is skipped).
- Open fds stay bounded whatever the depth: the fds of the :data:`KEEP_OPEN` levels nearest
  the top are kept; a deeper parent is closed on the way down and reopened on the way up
  through ``..``, which must be the very directory (device, inode) we came from — otherwise
  the walk stops with :class:`TreeMoved` (something renamed it meanwhile).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: Directory fds kept open per walk (the levels nearest the top), whatever the depth.
KEEP_OPEN = 32


class TreeMoved(OSError):
    """A directory being walked was moved away (``..`` is no longer where we came from)."""

    def __init__(self) -> None:
        super().__init__(errno.ESTALE, "directory moved while its tree was walked")


@dataclass(frozen=True, slots=True)
class Walked:
    """One entry met by :func:`walk_fd`; ``parent_fd`` is valid until the walk goes on."""

    path: str  # relative to the walk's top, "a/b" (may be longer than PATH_MAX)
    st: os.stat_result  # lstat
    parent_fd: int
    name: str


def _ident(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class _Level:
    __slots__ = ("fd", "ident", "name", "names")

    def __init__(self, fd: int | None, ident: tuple[int, int], name: str, names: list[str]) -> None:
        self.fd = fd
        self.ident = ident
        self.name = name  # this directory's name in its parent
        self.names = names  # entries still to visit, in pop order


class _Stack:
    """The directories from the walk's top to where it is, with bounded open fds.

    ``levels[0]`` is the top; its fd is owned only when ``own_top`` is set.
    """

    def __init__(self, top_fd: int, *, own_top: bool, names: list[str]) -> None:
        self.own_top = own_top
        self.levels = [_Level(top_fd, _ident(os.fstat(top_fd)), "", names)]

    def current_fd(self) -> int:
        fd = self.levels[-1].fd
        assert fd is not None
        return fd

    def enter(self, name: str, st: os.stat_result, names_of: _Names) -> bool:
        """Descend into directory ``name`` of the current level (``st``: its lstat). False
        when it is gone or is no longer that directory (nothing changes then)."""
        try:
            fd = os.open(name, _OPEN_DIR, dir_fd=self.current_fd())
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                return False
            raise
        try:
            if _ident(os.fstat(fd)) != _ident(st):
                os.close(fd)
                return False
            names = names_of(fd)
        except BaseException:
            os.close(fd)
            raise
        self.levels.append(_Level(fd, _ident(st), name, names))
        parent_index = len(self.levels) - 2
        if parent_index > KEEP_OPEN:
            parent = self.levels[parent_index]
            assert parent.fd is not None
            os.close(parent.fd)
            parent.fd = None
        return True

    def leave(self) -> _Level:
        """Go back up one level (not from the top); returns the level left (fd closed)."""
        child = self.levels.pop()
        parent = self.levels[-1]
        assert child.fd is not None
        try:
            if parent.fd is None:
                fd = os.open("..", _OPEN_DIR, dir_fd=child.fd)
                if _ident(os.fstat(fd)) != parent.ident:
                    os.close(fd)
                    raise TreeMoved()
                parent.fd = fd
        finally:
            os.close(child.fd)
            child.fd = None
        return child

    def close(self) -> None:
        for i, level in enumerate(self.levels):
            if level.fd is not None and (i > 0 or self.own_top):
                os.close(level.fd)
            level.fd = None
        self.levels.clear()


class _Names:
    """How a level lists its entries (sorted for walks that promise an order)."""

    def __init__(self, *, sort: bool) -> None:
        self._sort = sort

    def __call__(self, fd: int) -> list[str]:
        names = os.listdir(fd)
        if self._sort:
            names.sort(reverse=True)  # popped from the end: ascending order
        return names


def walk_fd(top: str | int) -> Iterator[Walked]:
    """Pre-order walk below ``top`` (a path, or a directory fd that stays the caller's),
    entries of a directory in name order, a directory's content right after it. Symlinks are
    reported, never followed; entries that vanish meanwhile are skipped."""
    own = not isinstance(top, int)
    top_fd = os.open(top, _OPEN_DIR) if isinstance(top, str) else top
    names_of = _Names(sort=True)
    try:
        stack = _Stack(top_fd, own_top=own, names=names_of(top_fd))
    except BaseException:
        if own:
            os.close(top_fd)
        raise
    prefix = ""
    try:
        while stack.levels:
            level = stack.levels[-1]
            if not level.names:
                if len(stack.levels) == 1:
                    break
                left = stack.leave()
                prefix = prefix[: len(prefix) - len(left.name) - 1]
                continue
            name = level.names.pop()
            fd = stack.current_fd()
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            path = prefix + name
            yield Walked(path, st, fd, name)
            if stat.S_ISDIR(st.st_mode) and stack.enter(name, st, names_of):
                prefix = path + "/"
    finally:
        stack.close()


def lstat_under(top: str, rel: str) -> os.stat_result:
    """``lstat`` of ``top/rel`` also when the joined path is longer than PATH_MAX (then
    reached component by component, without following symlinks on the way)."""
    if not rel.strip("/"):
        return os.lstat(top)
    return _call_under(top, rel, os.lstat)


def open_under(top: str, rel: str, flags: int = os.O_RDONLY) -> int:
    """``os.open`` of ``top/rel`` with ``O_NOFOLLOW`` (a final symlink is not followed), also
    when the joined path is longer than PATH_MAX (then reached component by component,
    without following symlinks on the way)."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    return _call_under(top, rel, lambda path, **at: os.open(path, flags, **at))


def readlink_under(top: str, rel: str) -> str:
    """``os.readlink`` of ``top/rel``, also beyond PATH_MAX (see :func:`open_under`)."""
    target: str = _call_under(top, rel, os.readlink)
    return target


def _call_under(top: str, rel: str, call: Callable[..., T]) -> T:
    """``call(top/rel)``; when that path is too long, ``call(name, dir_fd=parent)`` with the
    parent directory opened component by component."""
    try:
        return call(f"{top}/{rel}")
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
    parent, _, name = rel.rstrip("/").rpartition("/")
    fd = _open_dir_under(top, parent)
    try:
        return call(name, dir_fd=fd)
    finally:
        os.close(fd)


def _open_dir_under(top: str, rel: str) -> int:
    fd = os.open(top, _OPEN_DIR)
    try:
        for comp in rel.split("/"):
            if comp:
                nfd = os.open(comp, _OPEN_DIR, dir_fd=fd)
                os.close(fd)
                fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_tree(path: str, *, dir_fd: int | None = None, ignore_errors: bool = False) -> None:
    """Remove ``path`` (relative to ``dir_fd`` when given) and, if it is a directory,
    everything below it, at any depth; a missing ``path`` is not an error. Symlinks are
    removed, never followed. What cannot be removed is left while the rest goes; the first
    error is then raised unless ``ignore_errors``."""
    errors: list[OSError] = []
    try:
        _remove_tree(path, dir_fd, errors)
    except OSError as e:
        errors.append(e)
    if errors and not ignore_errors:
        raise errors[0]


def _remove_tree(path: str, dir_fd: int | None, errors: list[OSError]) -> None:
    try:
        st = os.lstat(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.unlink(path, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        return
    top_fd = os.open(path, _OPEN_DIR, dir_fd=dir_fd)
    names_of = _Names(sort=False)
    try:
        if _ident(os.fstat(top_fd)) != _ident(st):
            raise OSError(errno.ESTALE, "replaced while being removed", path)
        stack = _Stack(top_fd, own_top=True, names=names_of(top_fd))
    except BaseException:
        os.close(top_fd)
        raise
    try:
        while stack.levels:
            level = stack.levels[-1]
            if not level.names:
                if len(stack.levels) == 1:
                    break
                left = stack.leave()
                try:
                    os.rmdir(left.name, dir_fd=stack.current_fd())
                except FileNotFoundError:
                    pass
                except OSError as e:
                    _note(errors, e)
                continue
            name = level.names.pop()
            fd = stack.current_fd()
            try:
                cst = os.lstat(name, dir_fd=fd)
                if stat.S_ISDIR(cst.st_mode):
                    stack.enter(name, cst, names_of)
                else:
                    os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            except TreeMoved:
                raise
            except OSError as e:
                _note(errors, e)
    finally:
        stack.close()
    try:
        os.rmdir(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _note(errors: list[OSError], e: OSError) -> None:
    if not errors:  # the first one is reported; the others would say the same
        errors.append(e)


def is_temp_name(name: str) -> bool:
    """Names of the temp files :mod:`whaled.osutil.atomic` writes (``.tmp-*``, ``*.tmp-<pid>``)."""
    if name.startswith(".tmp-"):
        return True
    _, sep, pid = name.rpartition(".tmp-")
    return bool(sep) and pid.isdigit()


def sweep(directory: str, match: Callable[[str], bool] = is_temp_name) -> list[str]:
    """At start, remove the entries of ``directory`` whose name ``match``-es (leftovers of a
    crash); what cannot be removed is logged and left. Returns the names removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as e:
        log.warning("cannot read %s: %s", directory, e)
        return []
    removed: list[str] = []
    for name in names:
        if not match(name):
            continue
        try:
            remove_tree(os.path.join(directory, name))
        except Exception as e:  # the daemon must start
            log.warning("cannot remove leftover %s: %s", os.path.join(directory, name), e)
            continue
        removed.append(name)
    return removed


def names_or_none(directory: str) -> list[str] | None:
    """Entries of a store directory; None (logged) when it cannot be read."""
    try:
        return os.listdir(directory)
    except OSError as e:
        log.warning("cannot read %s: %s", directory, e)
        return None


def sweep_path(path: str, what: str) -> None:
    """Remove one leftover found at start (``what`` names it in the log); log and go on
    when that fails."""
    try:
        remove_tree(path)
    except Exception as e:  # the daemon must start
        log.warning("cannot remove %s %s: %s", what, path, e)


def load_json_records(
    directory: str, parse: Callable[[Any], T], what: str
) -> list[tuple[str, T]] | None:
    """At start: the JSON record files of a store directory, each parsed by ``parse`` (which
    raises KeyError, TypeError or ValueError for a bad one), with their paths. Temp files
    (``.tmp-*``) and records that cannot be read or parsed are removed (logged as ``what``).
    None when the directory cannot be listed."""
    names = names_or_none(directory)
    if names is None:
        return None
    out: list[tuple[str, T]] = []
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".tmp-"):
            sweep_path(path, "temp file")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                record = parse(json.load(f))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("dropping unreadable %s %s: %s", what, path, e)
            sweep_path(path, f"unreadable {what}")
            continue
        out.append((path, record))
    return out
