"""Resolve a container's ``--user`` and ``--group-add`` to numeric ids (pure).

The caller reads the image's ``/etc/passwd`` and ``/etc/group`` (inside the container's root
filesystem, symlinks resolved inside it) and passes their contents, or None when a file is
missing. The rules and error messages are dockerd's (which uses runc's user package):

- ``""`` means uid 0; a name is looked up in passwd; a number need not be in passwd (gid 0
  then, unless passwd has it);
- with an explicit group (``user:group``) the gid is that group's, and no supplementary
  groups are added; without one, the user's passwd gid is used and every group listing the
  user by name in /etc/group becomes a supplementary group;
- ``--group-add`` entries (names or numbers) are appended to the supplementary groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from whaled.errors import InvalidParameter

_MAX_ID = 2**31 - 1
_NO_PASSWD = "no matching entries in passwd file"
_NO_GROUP = "no matching entries in group file"
_RANGE = f"uids and gids must be in range 0-{_MAX_ID}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedUser:
    """The ids a container's process runs with."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    #: Home directory from passwd ("/" when the user has no entry).
    home: str = "/"


@dataclass(frozen=True, slots=True, kw_only=True)
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _lenient_int(text: str) -> int:
    # runc's parser ignores malformed numbers (they read as 0); do the same so a sloppy
    # line does not make the whole file unusable.
    try:
        return int(text)
    except ValueError:
        return 0


def _lines(content: str) -> list[list[str]]:
    rows = []
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def _parse_passwd(content: str) -> list[_PasswdEntry]:
    entries = []
    for f in _lines(content):
        f += [""] * (7 - len(f))
        entries.append(
            _PasswdEntry(name=f[0], uid=_lenient_int(f[2]), gid=_lenient_int(f[3]), home=f[5])
        )
    return entries


def _parse_group(content: str) -> list[_GroupEntry]:
    entries = []
    for f in _lines(content):
        f += [""] * (4 - len(f))
        members = tuple(m for m in f[3].split(",") if m)
        entries.append(_GroupEntry(name=f[0], gid=_lenient_int(f[2]), members=members))
    return entries


def _numeric(text: str) -> int | None:
    if text.isdigit() or (text.startswith(("-", "+")) and text[1:].isdigit()):
        return int(text)
    return None


def _check_range(value: int) -> int:
    if not 0 <= value <= _MAX_ID:
        raise InvalidParameter(_RANGE)
    return value


def resolve_user(
    user: str,
    *,
    passwd: str | None,
    group: str | None,
    group_add: Sequence[str] = (),
) -> ResolvedUser:
    """Resolve ``user`` (``""``, ``name``, ``uid``, ``name:group``, ``uid:gid``…)."""
    user_arg, _, group_arg = user.partition(":")
    group_arg = group_arg.split(":", 1)[0]
    uid_num = _numeric(user_arg)
    gid_num = _numeric(group_arg)

    uid, gid, home = 0, 0, "/"
    matched_name: str | None = None
    users = _parse_passwd(passwd) if passwd is not None else []
    if user_arg == "":
        found = [u for u in users if u.uid == 0]
    elif uid_num is not None:
        found = [u for u in users if u.uid == uid_num]
    else:
        found = [u for u in users if u.name == user_arg]
    if found:
        first = found[0]
        matched_name, uid, gid, home = first.name, first.uid, first.gid, first.home or "/"
    elif user_arg != "":
        if uid_num is None:
            raise InvalidParameter(f"unable to find user {user_arg}: {_NO_PASSWD}")
        uid = _check_range(uid_num)

    groups = _parse_group(group) if group is not None else []
    supplementary: list[int] = []
    if group_arg != "":
        if gid_num is not None:
            by_group = [g for g in groups if g.gid == gid_num]
        else:
            by_group = [g for g in groups if g.name == group_arg]
        if by_group:
            gid = by_group[0].gid
        elif gid_num is None:
            raise InvalidParameter(f"unable to find group {group_arg}: {_NO_GROUP}")
        else:
            gid = _check_range(gid_num)
    elif matched_name is not None:
        supplementary = [g.gid for g in groups if matched_name in g.members]

    for extra in group_add:
        supplementary.append(_additional_gid(extra, groups))
    return ResolvedUser(
        uid=uid, gid=gid, additional_gids=tuple(dict.fromkeys(supplementary)), home=home
    )


def _additional_gid(name: str, groups: Sequence[_GroupEntry]) -> int:
    number = _numeric(name)
    for g in groups:
        if g.name == name or (number is not None and g.gid == number):
            return g.gid
    if number is None:
        raise InvalidParameter(f"Unable to find group {name}: {_NO_GROUP}")
    return _check_range(number)
