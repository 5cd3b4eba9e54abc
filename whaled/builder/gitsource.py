"""Git build contexts (``remote=`` a git URL): which URLs are git repositories and what
their fragment asks for, by dockerd's rules. Pure; the clone is the builder's I/O."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from whaled.errors import InvalidParameter


@dataclass(frozen=True, slots=True, kw_only=True)
class GitSource:
    """``remote`` to fetch ``ref`` from (empty: the remote's HEAD), and the directory of
    the checkout that is the context (empty: its top)."""

    remote: str
    ref: str
    subdir: str


def is_git_url(url: str) -> bool:
    """dockerd's test: ``git://``, ``git@`` and ``github.com/`` addresses, and http(s)
    URLs whose path ends with ``.git`` (before any fragment)."""
    if url.startswith(("git://", "git@", "github.com/")):
        return True
    return url.startswith(("http://", "https://")) and url.split("#", 1)[0].endswith(".git")


def parse_git_url(url: str) -> GitSource:
    """``URL#ref:subdir``; ``github.com/...`` fetched over https. Refs and directories
    that could pass for options or leave the checkout are refused."""
    remote, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    if remote.startswith("github.com/"):
        remote = "https://" + remote
    if ref.startswith("-"):
        raise InvalidParameter(f"invalid git reference {ref!r} in {url}")
    inside = subdir.strip("/")
    clean = posixpath.normpath(inside) if inside else ""
    if clean == ".":
        clean = ""
    if clean == ".." or clean.startswith("../"):
        raise InvalidParameter(f"invalid git context directory {subdir!r} in {url}")
    return GitSource(remote=remote, ref=ref, subdir=clean)
