"""The container's file system for ``docker cp`` and ``docker export`` (synchronous).

The daemon runs these functions in a thread.

The file system a container sees is ``root`` (its mounted rootfs) plus bind mounts
(``mounts``: container destination → host source). Every path is resolved the way the
container would resolve it, one component at a time, with ``O_PATH | O_NOFOLLOW`` file
descriptors (only ``root`` and the mount sources, which the daemon chose, are opened by host
path):

- a symlink is read and its target re-walked *inside* the container: an absolute target
  starts again at the container root, ``..`` never climbs above it;
- when the walk reaches a mount destination it continues in that mount's host source
  (nested mounts work, the longest destination wins); mount destinations are themselves
  resolved in the container first, as the runtime does (``/var/run/x`` with ``/var/run → /run``
  is mounted at ``/run/x``);
- every later operation (read, create, chmod…) works relative to these descriptors, so a
  process inside the running container that swaps a directory for a symlink can redirect us
  at most to another place *inside* the container, never to the host.

What dockerd does and we match: ``GET /containers/{id}/archive`` (``archive_path``) and
``HEAD`` (``stat_path``) with the ``X-Docker-Container-Path-Stat`` object; the trailing ``/`` and
``/.`` rules of ``docker cp``; a final symlink archived as the link; ``PUT``
(``extract_to``) resolving the extraction point with its final symlink, tar members whose
parents are symlinks resolved in the container (dockerd unpacks in a chroot), members that
climb out of the extraction directory refused, ``noOverwriteDirNonDir``; and
``GET /containers/{id}/export`` (``export_rootfs``). Tar streams are produced lazily, one
file at a time (:mod:`whaled.archive.tarstream`); the tar side (members from files on disk,
what an unpacked member leaves on disk, opening a compressed upload) is in
:mod:`whaled.archive.files` and :mod:`whaled.archive.tarsafe`; this module keeps the
container's side: paths resolved inside the container and its mounts.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from whaled.archive.files import OnDisk, disk_entry, member_times_ns, set_xattrs, write_file
from whaled.archive.tarsafe import (
    ArchiveLimit,
    Readable,
    TarParser,
    open_upload,
    pax_xattrs,
    space_budget,
)
from whaled.archive.tarstream import TarEntry, stream_tar
from whaled.errors import Forbidden, InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.osutil.tree import TreeMoved, remove_tree

_O_LOOKUP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_SYMLINKS = 255  # dockerd's FollowSymlinkInScope gives up after as many links
_PARENT_CACHE_MAX = 256
#: Levels of path the parent cache may hold through directories resolved from the top (each
#: keeps its whole chain of nodes): past this the cache starts again, so hostile members
#: each deep in a different place cannot make it grow with depth times count.
_PARENT_CACHE_LEVELS = 1 << 16
#: Directory fds a path stack keeps open (the levels nearest the root, and its top); the
#: others are closed on the way down and reopened on the way back, so any depth costs a
#: bounded number of fds.
_KEEP_OPEN = 32

# Go's os.FileMode type bits (what dockerd puts in the path-stat header).
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
GO_MODE_DEVICE = 1 << 26
GO_MODE_NAMED_PIPE = 1 << 25
GO_MODE_SOCKET = 1 << 24
GO_MODE_SETUID = 1 << 23
GO_MODE_SETGID = 1 << 22
GO_MODE_CHAR_DEVICE = 1 << 21
GO_MODE_STICKY = 1 << 20

RO_ROOTFS_MESSAGE = "container rootfs is marked read-only"
RO_VOLUME_MESSAGE = "mounted volume is marked read-only"


class ContainerFileNotFound(NotFound):
    """dockerd's wording for a path that does not exist in the container."""

    def __init__(self, path: str, container: str) -> None:
        super().__init__(f"Could not find the file {path} in container {container}")


# ----------------------------------------------------------------------------- pure rules


def go_file_mode(st_mode: int) -> int:
    """Go's ``os.FileMode`` (uint32) for a ``st_mode``: permission bits plus type/special bits."""
    mode = st_mode & 0o777
    fmt = stat.S_IFMT(st_mode)
    if fmt == stat.S_IFDIR:
        mode |= GO_MODE_DIR
    elif fmt == stat.S_IFLNK:
        mode |= GO_MODE_SYMLINK
    elif fmt == stat.S_IFBLK:
        mode |= GO_MODE_DEVICE
    elif fmt == stat.S_IFCHR:
        mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE
    elif fmt == stat.S_IFIFO:
        mode |= GO_MODE_NAMED_PIPE
    elif fmt == stat.S_IFSOCK:
        mode |= GO_MODE_SOCKET
    if st_mode & stat.S_ISUID:
        mode |= GO_MODE_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_MODE_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_MODE_STICKY
    return mode


def format_go_time(ns: int, utc_offset: int) -> str:
    """A Unix time in nanoseconds as Go's JSON time (RFC 3339, trailing zeros trimmed)."""
    sec, frac = divmod(ns, 1_000_000_000)
    tz = UTC if utc_offset == 0 else timezone(timedelta(seconds=utc_offset))
    text = datetime.fromtimestamp(sec, tz=tz).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += f".{frac:09d}".rstrip("0")
    if utc_offset == 0:
        return text + "Z"
    sign = "+" if utc_offset > 0 else "-"
    hours, minutes = divmod(abs(utc_offset) // 60, 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def go_base(path: str) -> str:
    """Go's ``filepath.Base``: ``""`` → ``"."``, trailing slashes ignored, all slashes → ``"/"``."""
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path.rsplit("/", 1)[-1]


def container_abs_path(path: str) -> str:
    """The client's path made absolute and cleaned, keeping a trailing ``/`` or ``/.``.

    That suffix is what ``docker cp`` uses to tell "this directory" from "its contents".
    """
    if "\x00" in path:
        raise InvalidParameter("path must not contain NUL bytes")
    cleaned = "/" + posixpath.normpath("/" + path).lstrip("/")
    if go_base(cleaned) != "." and go_base(path) == ".":
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and path.endswith("/"):
        cleaned += "/"
    return cleaned


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _lexical_parts(path: str) -> tuple[str, ...]:
    return tuple(_components(posixpath.normpath("/" + path)))


def entry_parts(name: str, dest: str) -> tuple[str, ...]:
    """Components of a tar member name below the extraction directory ``dest``.

    Like dockerd's unpacker: the name is cleaned lexically, an absolute name is taken
    relative to the extraction directory, a name whose ``..`` climbs out of it is refused.
    """
    if "\x00" in name:
        raise InvalidParameter(f"invalid tar entry name {_q(name)}")
    clean = posixpath.normpath(name) if name else "."
    if not clean.startswith("/") and (clean == ".." or clean.startswith("../")):
        raise InvalidParameter(f"{_q(name)} is outside of {_q(dest)}")
    return tuple(_components(clean))


def _q(text: str) -> str:
    """Go's ``%q`` (close enough for messages)."""
    return json.dumps(text, ensure_ascii=False)


def _cpath_text(cpath: Sequence[str]) -> str:
    return "/" + "/".join(cpath)


def _path_stat(name: str, st: os.stat_result, link_target: str) -> dict[str, Any]:
    sec = st.st_mtime_ns // 1_000_000_000
    return {
        "name": name,
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": format_go_time(st.st_mtime_ns, time.localtime(sec).tm_gmtoff),
        "linkTarget": link_target,
    }


# ----------------------------------------------------------------------------- the walker


@dataclass(frozen=True, slots=True, kw_only=True)
class _Mount:
    dest: tuple[str, ...]  # resolved container path
    source: str  # host path (trusted: chosen by the daemon or the user at create)
    readonly: bool


@dataclass(eq=False, slots=True, kw_only=True)
class _Node:
    """One resolved object: its place in the container (``name`` in ``parent``), its host
    path and an ``O_PATH`` fd (owned).

    A node knows its parent, not its whole path: a path stack of depth d costs O(d), and
    the container and host paths are spelled out only when asked for (:attr:`cpath`,
    :attr:`host`)."""

    parent: _Node | None  # None: the container's root
    name: str  # "" for the root
    base: str | None  # the host path of the root or of a mount's root; None: below parent's
    fd: int | None  # None: does not exist
    st: os.stat_result | None
    mount: _Mount | None  # the innermost mount holding it; None = the rootfs
    depth: int = 0
    pid: int | None = None  # its container path's id in the view's paths, once asked for

    @property
    def cpath(self) -> tuple[str, ...]:
        """The container path, one component each (O(depth))."""
        names: list[str] = []
        node: _Node | None = self
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        names.reverse()
        return tuple(names)

    @property
    def host(self) -> str:
        """The host path (O(depth)): the nearest root or mount root's, then the names."""
        names: list[str] = []
        node = self
        while node.base is None:
            assert node.parent is not None
            names.append(node.name)
            node = node.parent
        if not names:
            return node.base
        names.reverse()
        return node.base.rstrip("/") + "/" + "/".join(names)

    @property
    def is_dir(self) -> bool:
        return self.st is not None and stat.S_ISDIR(self.st.st_mode)

    @property
    def is_link(self) -> bool:
        return self.st is not None and stat.S_ISLNK(self.st.st_mode)

    def proc(self) -> str:
        """A path that reaches exactly this inode (the fd's magic link)."""
        assert self.fd is not None
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# Creates the missing directory ``name`` under ``parent`` and returns its node.
_Creator = Callable[[_Node, str], _Node]


class _Paths:
    """Container paths interned as (parent's id, name), id 0 the root: a path is named in
    O(1) from its parent's id (what an extraction created, remembered for its roll-back,
    which walks the tree by ids)."""

    __slots__ = ("_depths", "_ids", "_names", "_parents")

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}
        self._parents = [-1]
        self._names = [""]
        self._depths = [0]

    def add(self, parent: int, name: str) -> int:
        key = (parent, name)
        pid = self._ids.get(key)
        if pid is None:
            pid = self._ids[key] = len(self._names)
            self._parents.append(parent)
            self._names.append(name)
            self._depths.append(self._depths[parent] + 1)
        return pid

    def parent(self, pid: int) -> int:
        return self._parents[pid]

    def name(self, pid: int) -> str:
        return self._names[pid]

    def depth(self, pid: int) -> int:
        return self._depths[pid]


class _View:
    """The container's file system seen from the host: rootfs plus mounts."""

    def __init__(
        self,
        root: str,
        mounts: Mapping[str, str],
        readonly_mounts: Collection[str] = (),
    ) -> None:
        self.root = root
        self._mounts: dict[tuple[str, ...], _Mount] = {}
        #: the depths of the mount destinations: a path is spelled out for a mount lookup
        #: only at these depths
        self._mount_depths: set[int] = set()
        self._paths = _Paths()
        ro = {_lexical_parts(d) for d in readonly_mounts}
        for dest, source in sorted(mounts.items(), key=lambda kv: len(_lexical_parts(kv[0]))):
            lexical = _lexical_parts(dest)
            key = lexical
            try:
                node = self.resolve(lexical)
            except (InvalidParameter, OSError):
                pass
            else:
                key = node.cpath
                node.close()
            self._mounts[key] = _Mount(dest=key, source=source, readonly=lexical in ro)
            self._mount_depths.add(len(key))
        self._mount_children: dict[tuple[str, ...], set[str]] = {}
        for key in self._mounts:
            if key:
                self._mount_children.setdefault(key[:-1], set()).add(key[-1])

    @staticmethod
    def _open_host(base: str, parent: _Node | None, name: str, mount: _Mount | None) -> _Node:
        depth = 0 if parent is None else parent.depth + 1
        try:
            fd = os.open(base, os.O_PATH | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            fd = None
        st = None if fd is None else os.fstat(fd)
        return _Node(parent=parent, name=name, base=base, fd=fd, st=st, mount=mount, depth=depth)

    def root_node(self) -> _Node:
        mount = self._mounts.get(())
        node = self._open_host(mount.source if mount else self.root, None, "", mount)
        if not node.is_dir:
            node.close()
            raise SystemFailure(f"container file system {node.host} is not available")
        return node

    def mount_below(self, parent: _Node, name: str) -> _Mount | None:
        """The mount whose destination is ``name`` in ``parent``, if any."""
        if parent.depth + 1 not in self._mount_depths:
            return None
        return self._mounts.get((*parent.cpath, name))

    def path_id(self, node: _Node) -> int:
        """``node``'s container path as an id of :class:`_Paths` (each node of a chain is
        named once)."""
        chain: list[_Node] = []
        at: _Node | None = node
        while at is not None and at.pid is None:
            chain.append(at)
            at = at.parent
        pid = 0 if at is None else at.pid
        assert pid is not None
        for n in reversed(chain):
            pid = n.pid = 0 if n.parent is None else self._paths.add(pid, n.name)
        return pid

    def walk_to(self, stack: list[_Node], ids: list[int], target: int) -> bool:
        """Move a path stack (``ids``: the path id of each of its nodes, the root's 0 first)
        to the directory the path id ``target`` names: up to the nearest common ancestor,
        then down one component at a time without following symlinks (the ids name resolved
        paths). False, the stack left part of the way, when something on the way is no
        longer a directory. Moving between neighbours costs what separates them, not the
        depth; :class:`TreeMoved` when a directory above was moved meanwhile."""
        paths = self._paths
        down: list[int] = []
        at = target
        while paths.depth(at) >= len(ids):
            down.append(at)
            at = paths.parent(at)
        while len(ids) - 1 > paths.depth(at):
            self.pop(stack).close()
            ids.pop()
        while ids[-1] != at:
            down.append(at)
            at = paths.parent(at)
            self.pop(stack).close()
            ids.pop()
        for pid in reversed(down):
            node = self.child(stack[-1], paths.name(pid))
            if not node.is_dir:
                node.close()
                return False
            self.push(stack, node)
            ids.append(pid)
        return True

    def child(self, parent: _Node, name: str) -> _Node:
        """``name`` in ``parent`` without following a final symlink (mounts are entered)."""
        mount = self.mount_below(parent, name)
        if mount is not None:
            return self._open_host(mount.source, parent, name, mount)
        fd = None
        if parent.fd is not None and parent.is_dir:
            try:
                fd = os.open(name, _O_LOOKUP, dir_fd=parent.fd)
            except (FileNotFoundError, NotADirectoryError):
                pass
        return _Node(
            parent=parent,
            name=name,
            base=None,
            fd=fd,
            st=None if fd is None else os.fstat(fd),
            mount=parent.mount,
            depth=parent.depth + 1,
        )

    def push(self, stack: list[_Node], node: _Node) -> None:
        """Append ``node`` to a path stack (each node the parent of the next), closing the
        fd of the former top when it is deep (see :data:`_KEEP_OPEN`)."""
        stack.append(node)
        below = len(stack) - 2
        if below >= _KEEP_OPEN:
            stack[below].close()

    def pop(self, stack: list[_Node]) -> _Node:
        """Remove the top of a path stack (the caller owns it) and make sure the new top
        has its fd again: reopened from the nearest open ancestor, one component at a
        time, and checked to be the same directory."""
        node = stack.pop()
        if stack and stack[-1].fd is None and stack[-1].st is not None:  # closed, not missing
            if not self._reopen_parent(stack[-1], node):
                self._reopen(stack)
        return node

    def _reopen_parent(self, parent: _Node, node: _Node) -> bool:
        """Reopen ``parent`` through ``node``'s ``..`` (one step), unless ``node`` is a mount
        root (its ``..`` is on the host); False when that is not possible."""
        if node.fd is None or node.base is not None:  # a mount's root
            return False
        try:
            fd = os.open("..", _O_LOOKUP, dir_fd=node.fd)
        except OSError:
            return False
        st = os.fstat(fd)
        assert parent.st is not None
        if (st.st_dev, st.st_ino) != (parent.st.st_dev, parent.st.st_ino):
            os.close(fd)
            return False
        parent.fd = fd
        return True

    def _reopen(self, stack: list[_Node]) -> None:
        i = len(stack) - 1
        j = max(k for k in range(i) if stack[k].fd is not None)
        cur = stack[j]
        for k in range(j + 1, i + 1):
            want = stack[k]
            nxt = self.child(cur, want.name)
            if cur is not stack[j]:
                cur.close()
            same = (
                nxt.st is not None
                and want.st is not None
                and (nxt.st.st_dev, nxt.st.st_ino) == (want.st.st_dev, want.st.st_ino)
            )
            if not same:
                nxt.close()
                raise TreeMoved()
            cur = nxt
        stack[i].fd, cur.fd = cur.fd, None

    def resolve(self, parts: Sequence[str], *, create: _Creator | None = None) -> _Node:
        """Follow every component of ``parts`` (symlinks included) inside the container.

        Missing components are kept lexically (like dockerd's FollowSymlinkInScope) unless
        ``create`` makes them. The caller owns (closes) the returned node.
        """
        stack = [self.root_node()]
        pending = list(reversed(parts))
        links = 0
        try:
            while pending:
                comp = pending.pop()
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:
                        self.pop(stack).close()
                    continue
                node = self.child(stack[-1], comp)
                if node.st is None and create is not None:
                    node = create(stack[-1], comp)
                if node.is_link:
                    links += 1
                    try:
                        if links > MAX_SYMLINKS:
                            raise InvalidParameter(f"too many links in {_cpath_text(node.cpath)}")
                        assert node.fd is not None
                        target = os.readlink("", dir_fd=node.fd)
                    finally:
                        node.close()
                    if target.startswith("/"):
                        while len(stack) > 1:
                            stack.pop().close()
                    pending.extend(reversed(target.split("/")))
                    continue
                self.push(stack, node)
            return stack.pop()
        finally:
            for node in stack:
                node.close()

    def resolve_path(self, abs_path: str, *, follow_final: bool) -> _Node:
        """The object at ``abs_path``; a trailing ``/`` or ``/.`` always follows the final link."""
        parts = _components(abs_path)
        if not parts or follow_final or abs_path.endswith(("/", "/.")):
            return self.resolve(parts)
        parent = self.resolve(parts[:-1])
        try:
            return self.child(parent, parts[-1])
        finally:
            parent.close()

    def names(self, node: _Node) -> list[str]:
        """Directory entries of ``node`` plus mount destinations directly below it."""
        fd = os.open(node.proc(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            found = set(os.listdir(fd))
        finally:
            os.close(fd)
        if node.depth + 1 in self._mount_depths:
            found |= self._mount_children.get(node.cpath, set())
        return sorted(found)


# ----------------------------------------------------------------------------- reading


def _tar_entry(node: _Node, name: str, hardlinks: dict[tuple[int, int], str]) -> TarEntry | None:
    """The tar member for ``node`` named ``name``; None for sockets (dockerd skips them)."""
    assert node.st is not None and node.fd is not None
    return disk_entry(name, node.st, OnDisk(node.fd), hardlinks)


def _tree_entries(
    view: _View, top: _Node, name_of: Callable[[str], str], *, include_top: bool
) -> Iterator[TarEntry]:
    """Pre-order, name-sorted tar entries of ``top`` (owned: closed at the end). No
    recursion, and a bounded number of open fds whatever the depth (``_View.push``)."""
    hardlinks: dict[tuple[int, int], str] = {}
    nodes: list[_Node] = []  # top, then each directory being listed below it
    pending: list[Iterator[str]] = []
    rel = ""
    try:
        if include_top:
            entry = _tar_entry(top, name_of(""), hardlinks)
            if entry is not None:
                yield entry
        if not top.is_dir:
            return
        nodes.append(top)
        pending.append(iter(view.names(top)))
        while pending:
            name = next(pending[-1], None)
            if name is None:
                pending.pop()
                if len(nodes) > 1:
                    view.pop(nodes).close()
                    rel = rel.rpartition("/")[0]
                continue
            node = view.child(nodes[-1], name)
            keep = False
            try:
                if node.st is None:
                    continue  # removed while we walk
                crel = f"{rel}/{name}" if rel else name
                entry = _tar_entry(node, name_of(crel), hardlinks)
                if entry is not None:
                    yield entry
                if node.is_dir:
                    names = iter(view.names(node))
                    view.push(nodes, node)
                    pending.append(names)
                    rel = crel
                    keep = True
            finally:
                if not keep:
                    node.close()
    finally:
        for node in nodes:
            if node is not top:
                node.close()
        top.close()


def _rebaser(prefix: str) -> Callable[[str], str]:
    """dockerd's entry names: the base of the requested path, then the relative path."""

    def name_of(rel: str) -> str:
        if not rel:
            return prefix
        if prefix == "/":
            return "/" + rel
        return f"{prefix}/{rel}"

    return name_of


def _open_target(view: _View, abs_path: str, path: str, container: str) -> _Node:
    node = view.resolve_path(abs_path, follow_final=False)
    trailing = abs_path.endswith(("/", "/.")) and abs_path != "/"
    if node.st is None or (trailing and not node.is_dir):
        # (dockerd answers "not a directory" for "file/" with a 500; a 404 says it better)
        node.close()
        raise ContainerFileNotFound(path, container)
    return node


def resolve(root: str, mounts: Mapping[str, str], path: str, *, follow_final: bool = True) -> str:
    """The host path of the container path ``path`` (which need not exist).

    A trailing ``/`` or ``/.`` follows a final symlink even with ``follow_final=False``.
    The answer is a snapshot: the container may change its file system right after.
    """
    node = _View(root, mounts).resolve_path(container_abs_path(path), follow_final=follow_final)
    node.close()
    return node.host


def _target_stat(view: _View, abs_path: str, node: _Node) -> dict[str, Any]:
    assert node.st is not None
    link_target = ""
    if node.is_link:  # dockerd: the fully resolved path, as seen in the container
        target = view.resolve(_components(abs_path))
        target.close()
        link_target = _cpath_text(target.cpath)
    return _path_stat(go_base(abs_path), node.st, link_target)


def stat_path(root: str, mounts: Mapping[str, str], path: str, *, container: str) -> dict[str, Any]:
    """dockerd's ContainerPathStat of ``path`` (``X-Docker-Container-Path-Stat``, pre-base64)."""
    view = _View(root, mounts)
    abs_path = container_abs_path(path)
    node = _open_target(view, abs_path, path, container)
    try:
        return _target_stat(view, abs_path, node)
    finally:
        node.close()


def archive_path(
    root: str, mounts: Mapping[str, str], path: str, *, container: str
) -> tuple[dict[str, Any], Iterator[bytes]]:
    """Stat and tar stream of ``path`` for ``GET /containers/{id}/archive``.

    Names start with the base of the path (``/etc`` → ``etc/``, ``etc/passwd``; ``/etc/.``
    → ``./``, ``./passwd``; ``/`` → ``/``, ``/bin/``…) and the CLI rebases them itself. A
    final symlink is archived as the link; ``/link/`` and ``/link/.`` archive its target's
    content under the requested name. The stream holds the opened object, so what is
    archived is what was stat'ed. Errors before the first byte are raised here.
    """
    view = _View(root, mounts)
    abs_path = container_abs_path(path)
    node = _open_target(view, abs_path, path, container)
    try:
        info = _target_stat(view, abs_path, node)
    except BaseException:
        node.close()
        raise
    return info, _OwnedStream(
        node, stream_tar(_tree_entries(view, node, _rebaser(go_base(abs_path)), include_top=True))
    )


def export_rootfs(root: str) -> Iterator[bytes]:
    """Tar of the whole rootfs for ``GET /containers/{id}/export``: ``bin/``, ``bin/sh``…

    No mounts, no root entry, special files kept, sockets skipped (as dockerd).
    """
    view = _View(root, {})
    top = view.root_node()
    return _OwnedStream(
        top, stream_tar(_tree_entries(view, top, lambda rel: rel, include_top=False))
    )


class _OwnedStream(Iterator[bytes]):
    """A tar stream that releases its top fd even if nobody ever iterates it."""

    def __init__(self, top: _Node, chunks: Iterator[bytes]) -> None:
        self._top = top
        self._chunks = chunks

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._top.close()

    def __del__(self) -> None:
        self._top.close()


# ----------------------------------------------------------------------------- extraction


class FileMaker(Protocol):
    """Makes a member's regular file ``name`` in ``dir_fd`` from the tar's data (``parts``:
    its path below the extraction point), instead of :func:`write_file`: the build context
    cache links files it already has."""

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
    ) -> None: ...


class _Extractor:
    def __init__(
        self,
        view: _View,
        dest: _Node,
        *,
        no_overwrite_dir_non_dir: bool,
        readonly_rootfs: bool,
        owner: tuple[int, int] | None,
        files: FileMaker | None = None,
    ) -> None:
        self.view = view
        self.files = files
        self.dest = dest
        self.dest_text = _cpath_text(dest.cpath)
        self.no_overwrite = no_overwrite_dir_non_dir
        self.readonly_rootfs = readonly_rootfs
        self.owner = owner
        #: directories members went into, by their joined names below dest (a tuple of
        #: components would cost far more memory than the name)
        self._parents: dict[str, _Node] = {}
        self._parent_levels = 0  # of the cached directories resolved from the top
        #: what this extraction created, for :meth:`roll_back`: (the container path id of
        #: its directory, its name); O(1) each, however deep
        self.created: list[tuple[int, str]] = []
        #: directories whose times are set at the end, by joined name (a tuple of components
        #: would cost far more memory than the name)
        self._dirs: list[tuple[str, tuple[int, int]]] = []

    # -- helpers

    def close(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop the parent cache (a directory or symlink it may pass through was replaced)."""
        for node in self._parents.values():
            node.close()
        self._parents.clear()
        self._parent_levels = 0

    def trim(self) -> None:
        """Bound the open fds; only between members, when no cached node is in use."""
        if len(self._parents) >= _PARENT_CACHE_MAX or self._parent_levels >= _PARENT_CACHE_LEVELS:
            self.forget()

    def check_writable(self, mount: _Mount | None, entry: str) -> None:
        if mount is not None:
            if mount.readonly:
                raise Forbidden(f"cannot extract {_q(entry)}: {RO_VOLUME_MESSAGE}")
        elif self.readonly_rootfs:
            raise Forbidden(f"cannot extract {_q(entry)}: {RO_ROOTFS_MESSAGE}")

    def parent(self, parts: tuple[str, ...], entry: str, *, create: bool) -> _Node:
        """The directory holding ``parts`` (relative to dest), resolved in the container."""
        if not parts:
            return self.dest
        key = "/".join(parts)
        cached = self._parents.get(key)
        if cached is not None:
            return cached

        def mkdir(parent: _Node, name: str) -> _Node:
            if parent.fd is None or not parent.is_dir:
                raise InvalidParameter(
                    f"cannot extract {_q(entry)}: {_cpath_text(parent.cpath)} is not a directory"
                )
            self.check_writable(parent.mount, entry)
            try:
                os.mkdir(name, 0o755, dir_fd=parent.fd)
            except FileExistsError:
                pass  # raced with the container: look again
            else:
                self.created.append((self.view.path_id(parent), name))
            return self.view.child(parent, name)

        # Usually one step from the parent's own (cached) parent: a plain directory there is
        # what resolving the whole path would find. Anything else (a symlink...) is resolved
        # from the top. Deep trees cost one lookup per member this way, not one per level.
        above = self._parents.get(key.rpartition("/")[0]) if len(parts) > 1 else self.dest
        if above is not None and above.fd is not None and above.is_dir:
            node = self.view.child(above, parts[-1])
            if node.st is None and create:
                node.close()
                node = mkdir(above, parts[-1])
            if node.is_dir:
                self._parents[key] = node
                return node
            node.close()
        node = self.view.resolve((*self.dest.cpath, *parts), create=mkdir if create else None)
        if not node.is_dir:
            node.close()
            where = _cpath_text((*self.dest.cpath, *parts))
            raise InvalidParameter(f"cannot extract {_q(entry)}: {where} is not a directory")
        self._parents[key] = node
        self._parent_levels += node.depth
        return node

    def ids(self, member: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (member.uid, member.gid)

    # -- one member

    def member(self, tar: TarParser, member: tarfile.TarInfo) -> None:
        self.trim()
        name = member.name
        parts = entry_parts(name, self.dest_text)
        if not parts:
            if member.isdir():
                return  # the extraction directory itself: dockerd leaves it alone
            if self.no_overwrite:
                raise InvalidParameter(
                    f"cannot overwrite directory {_q(self.dest_text)} with non-directory "
                    f"{_q(self.dest_text)}"
                )
            raise InvalidParameter(f"cannot replace the extraction directory with {_q(name)}")
        parent = self.parent(parts[:-1], name, create=True)
        assert parent.fd is not None
        base = parts[-1]
        where = self.dest_text.rstrip("/") + "/" + "/".join(parts)

        mount = self.view.mount_below(parent, base)
        if mount is not None:
            # A mount point: only a directory can be merged into a directory mount.
            node = self.view.child(parent, base)
            try:
                if not (member.isdir() and node.is_dir):
                    raise InvalidParameter(
                        f"cannot extract {_q(name)}: "
                        f"{_cpath_text((*parent.cpath, base))} is a mount point"
                    )
                self.check_writable(mount, name)
                self._apply_dir(node, member)
            finally:
                node.close()
            return
        self.check_writable(parent.mount, name)

        try:
            existing: os.stat_result | None = os.lstat(base, dir_fd=parent.fd)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if self.no_overwrite and is_dir and not member.isdir():
                raise InvalidParameter(
                    f"cannot overwrite directory {_q(where)} with non-directory "
                    f"{_q(self.dest_text)}"
                )
            if self.no_overwrite and not is_dir and member.isdir():
                raise InvalidParameter(
                    f"cannot overwrite non-directory {_q(where)} with directory "
                    f"{_q(self.dest_text)}"
                )
            if not (is_dir and member.isdir()):
                if is_dir:
                    remove_tree(base, dir_fd=parent.fd)
                else:
                    os.unlink(base, dir_fd=parent.fd)
                if is_dir or stat.S_ISLNK(existing.st_mode):
                    self.forget()  # cached parents may pass through what was removed
                    parent = self.parent(parts[:-1], name, create=True)
                    assert parent.fd is not None
        if existing is None or not (stat.S_ISDIR(existing.st_mode) and member.isdir()):
            self.created.append((self.view.path_id(parent), base))
        self._create(tar, member, parent, base, parts)

    def roll_back(self) -> None:
        """Remove what this extraction created, newest first (after a bound was crossed: a
        decompression bomb leaves nothing behind). What it replaced is gone; directories
        that still hold something (the container's own files) stay."""
        self.forget()
        created, self.created = self.created, []
        stack: list[_Node] = []
        ids: list[int] = []
        try:
            # One walk from each removal's directory to the next one's: newest first, they
            # are mostly neighbours (a deep member's parents, one level up at a time).
            for pid, name in reversed(created):
                try:
                    if not stack:
                        stack.append(self.view.root_node())
                        ids.append(0)
                    if not self.view.walk_to(stack, ids, pid):
                        continue
                    parent_fd = stack[-1].fd
                    assert parent_fd is not None
                    st = os.lstat(name, dir_fd=parent_fd)
                    if stat.S_ISDIR(st.st_mode):
                        os.rmdir(name, dir_fd=parent_fd)
                    else:
                        os.unlink(name, dir_fd=parent_fd)
                except TreeMoved:
                    for node in stack:  # the container moved a directory: from the top
                        node.close()
                    stack.clear()
                    ids.clear()
                except (WhaledError, OSError):
                    pass  # gone already, not empty (the container's files), not reachable
        finally:
            for node in stack:
                node.close()

    def _create(
        self,
        tar: TarParser,
        member: tarfile.TarInfo,
        parent: _Node,
        base: str,
        parts: tuple[str, ...],
    ) -> None:
        assert parent.fd is not None
        pfd = parent.fd
        uid, gid = self.ids(member)
        mode = member.mode & 0o7777
        times = member_times_ns(member)
        xattrs = pax_xattrs(member.pax_headers)

        if member.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                pass  # an existing directory: merge
            node = self.view.child(parent, base)
            try:
                self._apply_dir(node, member)
            finally:
                node.close()
            self._dirs.append(("/".join(parts), times))
            return

        if member.isreg():
            if self.files is not None:
                self.files(
                    pfd, base, parts, member, tar,
                    owner=(uid, gid), mode=mode, xattrs=xattrs, times=times,
                )  # fmt: skip
                return

            def fill(fd: int) -> None:
                tar.copy_data(fd)

            write_file(pfd, base, fill, owner=(uid, gid), mode=mode, xattrs=xattrs, times=times)
            return

        if member.issym():
            os.symlink(member.linkname, base, dir_fd=pfd)
            os.chown(base, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=times, dir_fd=pfd, follow_symlinks=False)
            return

        if member.islnk():
            tparts = entry_parts(member.linkname, self.dest_text)
            if not tparts:
                raise InvalidParameter(
                    f"cannot extract hard link {_q(member.name)}: target is a directory"
                )
            tparent = self.parent(tparts[:-1], member.name, create=False)
            assert tparent.fd is not None
            tmount = self.view.mount_below(tparent, tparts[-1]) or tparent.mount
            if tmount is not parent.mount:
                # link(2) inside the container's mounts fails so (dockerd: EXDEV); made
                # between host directories it could join a read-only mount's file to a
                # writable place on the same host file system
                raise InvalidParameter(
                    f"cannot extract hard link {_q(member.name)}: target "
                    f"{_q(member.linkname)} is on another mount (invalid cross-device link)"
                )
            try:
                os.link(
                    tparts[-1],
                    base,
                    src_dir_fd=tparent.fd,
                    dst_dir_fd=pfd,
                    follow_symlinks=False,
                )
            except FileNotFoundError:
                raise InvalidParameter(
                    f"cannot extract hard link {_q(member.name)}: target "
                    f"{_q(member.linkname)} does not exist"
                ) from None
            return

        if member.ischr() or member.isblk() or member.isfifo():
            if member.isfifo():
                kind = stat.S_IFIFO
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
            # Re-open what we created without following anything, then work on that inode
            # only: a process in the container cannot swap a symlink in between.
            node = self.view.child(parent, base)
            try:
                if node.st is None or stat.S_IFMT(node.st.st_mode) != kind:
                    raise InvalidParameter(f"cannot extract {_q(member.name)}: it was replaced")
                os.chown(node.proc(), uid, gid)
                os.chmod(node.proc(), mode)
                set_xattrs(node.proc(), xattrs)
                os.utime(node.proc(), ns=times)
            finally:
                node.close()
            return

        raise InvalidParameter(
            f"cannot extract {_q(member.name)}: unsupported tar entry type {member.type!r}"
        )

    def _apply_dir(self, node: _Node, member: tarfile.TarInfo) -> None:
        if not node.is_dir:
            raise InvalidParameter(f"cannot extract {_q(member.name)}: it was replaced")
        fd = os.open(node.proc(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            uid, gid = self.ids(member)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, member.mode & 0o7777)
            set_xattrs(fd, pax_xattrs(member.pax_headers))
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory times last (creating their content changed them). The order among
        them does not matter then: they go top-down, each parent found one step from the
        previous one; a directory named twice keeps the times of its first entry."""
        times_of: dict[str, tuple[int, int]] = {}
        for name, times in self._dirs:
            times_of.setdefault(name, times)
        self._dirs.clear()
        for name, times in times_of.items():
            parts = tuple(name.split("/"))
            self.trim()
            try:
                parent = self.parent(parts[:-1], "/".join(parts), create=False)
            except (InvalidParameter, OSError):
                continue
            node = self.view.child(parent, parts[-1])
            try:
                if node.is_dir:
                    os.utime(node.proc(), ns=times)
            except OSError:
                pass
            finally:
                node.close()


def extract_to(
    root: str,
    mounts: Mapping[str, str],
    path: str,
    stream: Readable,
    *,
    container: str,
    no_overwrite_dir_non_dir: bool,
    copy_uid_gid: bool,
    readonly_rootfs: bool = False,
    readonly_mounts: Collection[str] = (),
    owner: tuple[int, int] | None = None,
    files: FileMaker | None = None,
) -> None:
    """Unpack the tar ``stream`` (plain, gzip, bzip2, xz; zstd if available) into ``path``.

    ``path`` is resolved with its final symlink and must be a directory. Members keep their
    uid/gid; ``copy_uid_gid`` with an ``owner`` (the container's Config.User, resolved by the
    caller) gives every member that owner instead, like ``docker cp -a`` on dockerd. Nothing
    is ever written outside the container's root and its mounts; ``readonly_mounts`` lists the
    destinations mounted read-only.

    Raises ContainerFileNotFound (404), InvalidParameter (400) for a bad extraction point or
    a refused member, Forbidden (403, as the API documents; current dockerd sends 400) when
    the place is read-only, ArchiveLimit (400) for an archive beyond the bounds of
    :mod:`whaled.archive.tarsafe` (what the extraction created is removed again),
    SystemFailure for host errors.
    """
    view = _View(root, mounts, readonly_mounts)
    abs_path = container_abs_path(path)
    dest = view.resolve(_components(abs_path))
    if dest.st is None:
        dest.close()
        raise ContainerFileNotFound(path, container)
    if not dest.is_dir:
        dest.close()
        raise InvalidParameter("extraction point is not a directory")
    if dest.mount is not None:
        if dest.mount.readonly:
            dest.close()
            raise Forbidden(RO_VOLUME_MESSAGE)
    elif readonly_rootfs:
        dest.close()
        raise Forbidden(RO_ROOTFS_MESSAGE)

    ex = _Extractor(
        view,
        dest,
        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
        readonly_rootfs=readonly_rootfs,
        owner=owner if copy_uid_gid else None,
        files=files,
    )
    current = ""
    try:
        # the uncompressed size is bounded by the space where it goes (ArchiveLimit)
        assert dest.fd is not None
        with open_upload(stream, limit=space_budget(dest.fd)) as tar:
            if tar is None:
                return  # an empty body extracts nothing (dockerd: same)
            for member in tar:
                current = member.name
                ex.member(tar, member)
        ex.finish()
    except ArchiveLimit:
        ex.roll_back()
        raise
    except WhaledError:
        raise
    except tarfile.TarError as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from None
    except OSError as e:
        if e.errno in (
            errno.ENAMETOOLONG,
            errno.EEXIST,
            errno.EPERM,
            errno.EISDIR,
            errno.ENOTDIR,
            errno.EXDEV,
            errno.ELOOP,
            errno.EBUSY,
        ):
            raise InvalidParameter(f"cannot extract {_q(current)}: {e.strerror}") from None
        raise SystemFailure(f"failed to extract {_q(current)}: {e}") from e
    finally:
        ex.close()
        dest.close()
