from __future__ import annotations

from collections.abc import Sequence

import pytest

from whaled.errors import InvalidParameter
from whaled.runtime.usermap import ResolvedUser, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www:x:33:33:www:/var/www:/bin/false
app:x:1000:1000::/home/app:/bin/sh
dup:x:1000:5::/other:/bin/sh
"""
GROUP = """\
root:x:0:
daemon:x:1:
tty:x:5:app
www:x:33:
audio:x:29:app,www
app:x:1000:
video:x:44:
"""


def resolve(user: str, group_add: Sequence[str] = ()) -> ResolvedUser:
    return resolve_user(user, passwd=PASSWD, group=GROUP, group_add=group_add)


def test_empty_user_is_root() -> None:
    assert resolve("") == ResolvedUser(uid=0, gid=0, home="/root")


def test_empty_user_without_files() -> None:
    assert resolve_user("", passwd=None, group=None) == ResolvedUser(uid=0, gid=0)


def test_name_gets_passwd_ids_and_member_groups() -> None:
    assert resolve("app") == ResolvedUser(
        uid=1000, gid=1000, additional_gids=(5, 29), home="/home/app"
    )


def test_numeric_uid_in_passwd() -> None:
    # first match wins; supplementary groups come from the matched name
    assert resolve("1000") == ResolvedUser(
        uid=1000, gid=1000, additional_gids=(5, 29), home="/home/app"
    )


def test_numeric_uid_not_in_passwd_gets_gid_0() -> None:
    assert resolve("4242") == ResolvedUser(uid=4242, gid=0)


def test_numeric_uid_without_passwd_file() -> None:
    assert resolve_user("4242", passwd=None, group=None) == ResolvedUser(uid=4242, gid=0)


def test_unknown_name() -> None:
    with pytest.raises(
        InvalidParameter, match=r"^unable to find user foo: no matching entries in passwd file$"
    ):
        resolve("foo")


def test_name_without_passwd_file() -> None:
    with pytest.raises(InvalidParameter, match="unable to find user app: no matching entries"):
        resolve_user("app", passwd=None, group=GROUP)


def test_name_and_group_name() -> None:
    # explicit group: no supplementary groups from membership
    assert resolve("app:video") == ResolvedUser(uid=1000, gid=44, home="/home/app")


def test_uid_and_gid_numeric_not_in_files() -> None:
    assert resolve("4242:4343") == ResolvedUser(uid=4242, gid=4343)
    assert resolve_user("4242:4343", passwd=None, group=None) == ResolvedUser(uid=4242, gid=4343)


def test_name_and_numeric_gid() -> None:
    assert resolve("www:29") == ResolvedUser(uid=33, gid=29, home="/var/www")


def test_unknown_group_name() -> None:
    with pytest.raises(
        InvalidParameter, match=r"^unable to find group nope: no matching entries in group file$"
    ):
        resolve("app:nope")


def test_group_name_without_group_file() -> None:
    with pytest.raises(InvalidParameter, match="unable to find group video"):
        resolve_user("app:video", passwd=PASSWD, group=None)


def test_group_add_names_and_numbers_deduplicated() -> None:
    got = resolve("app", group_add=["video", "29", "777"])
    assert got.additional_gids == (5, 29, 44, 777)


def test_group_add_unknown_name() -> None:
    with pytest.raises(
        InvalidParameter, match=r"^Unable to find group nope: no matching entries in group file$"
    ):
        resolve("app", group_add=["nope"])


def test_group_add_with_explicit_group() -> None:
    assert resolve("1:1", group_add=["audio"]) == ResolvedUser(
        uid=1, gid=1, additional_gids=(29,), home="/usr/sbin"
    )


def test_out_of_range_ids() -> None:
    with pytest.raises(InvalidParameter, match="uids and gids must be in range"):
        resolve("-1")
    with pytest.raises(InvalidParameter, match="uids and gids must be in range"):
        resolve("0:4294967296")


def test_malformed_lines_are_tolerated() -> None:
    got = resolve_user("odd", passwd="odd:x:notanumber\n", group="g:x\n")
    assert got == ResolvedUser(uid=0, gid=0)
