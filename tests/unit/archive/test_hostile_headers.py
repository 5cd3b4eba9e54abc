"""Hostile header values (times, ids, device numbers, PAX records, names) give a result or a
domain error (a 400), never another exception (a 500), and nothing lands outside the root:
at the layer unpacker and at docker cp's extraction."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from whaled.archive import tarsafe as t
from whaled.archive.files import member_times_ns
from whaled.container import archive as cp
from whaled.errors import InvalidParameter, WhaledError

POLICY = t.UnpackPolicy(owners=False, devices=False)  # (no root needed)


def _tar(
    pax: dict[str, str],
    kind: bytes = tarfile.REGTYPE,
    fmt: int = tarfile.PAX_FORMAT,
    **attrs: object,
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo("x")
        info.type = kind
        for key, value in attrs.items():
            setattr(info, key, value)
        info.pax_headers = pax
        tf.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def _unpack(data: bytes, root: str) -> None:
    t.unpack_tar(t.TarParser(t.TarInput(io.BytesIO(data))), root, POLICY)


def _extract(data: bytes, root: str) -> None:
    cp.extract_to(
        root, {}, "/", io.BytesIO(data), container="c",
        no_overwrite_dir_non_dir=False, copy_uid_gid=False,
    )  # fmt: skip


@pytest.mark.parametrize("door", [_unpack, _extract])
@pytest.mark.parametrize(
    "data",
    [
        _tar({"mtime": "1e30"}),
        _tar({"mtime": "-1e30"}),
        _tar({"mtime": "nan"}),
        _tar({"mtime": "inf"}),
        _tar({"atime": "1e30"}),
        _tar({"mtime": "1e30"}, tarfile.DIRTYPE),
        _tar({}, fmt=tarfile.GNU_FORMAT, mtime=2**62),  # base-256 header field
        _tar({}, fmt=tarfile.GNU_FORMAT, mtime=-(2**40)),
    ],
    ids=["1e30", "-1e30", "nan", "inf", "atime", "dir", "base-256", "negative base-256"],
)
def test_times_out_of_range_are_the_epoch(door: object, data: bytes, tmp_path: object) -> None:
    """(dockerd's Chtimes does so; they were OverflowError / ValueError: a 500)"""
    door(data, str(tmp_path))  # type: ignore[operator]
    assert os.lstat(os.path.join(str(tmp_path), "x")).st_mtime_ns == 0


@pytest.mark.parametrize("door", [_unpack, _extract])
@pytest.mark.parametrize(
    "data",
    [
        _tar({"uid": str(2**40)}),
        _tar({"gid": "-5"}),
        _tar({}, fmt=tarfile.GNU_FORMAT, uid=2**50),
        _tar({}, tarfile.CHRTYPE, fmt=tarfile.GNU_FORMAT, devmajor=2**40),
    ],
    ids=["uid 2^40", "gid -5", "base-256 uid", "base-256 device major"],
)
def test_ids_out_of_range_are_a_bad_archive(door: object, data: bytes, tmp_path: object) -> None:
    with pytest.raises(InvalidParameter, match="out of range"):
        door(data, str(tmp_path))  # type: ignore[operator]


@pytest.mark.parametrize("door", [_unpack, _extract])
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_tar({"SCHILY.xattr.user.x": "v" * 70_000}), "cannot set extended attribute"),
        (_tar({"SCHILY.xattr.user." + "n" * 300: "v"}), "cannot set extended attribute"),
        (_tar({}, tarfile.SYMTYPE), "has no target"),
    ],
    ids=["xattr value too long", "xattr name too long", "symlink without a target"],
)
def test_what_the_kernel_refuses_is_a_bad_archive(
    door: object, data: bytes, message: str, tmp_path: object
) -> None:
    """(E2BIG / ERANGE from setxattr and ENOENT from symlink were 500s)"""
    with pytest.raises(InvalidParameter, match=message):
        door(data, str(tmp_path))  # type: ignore[operator]


def test_member_times() -> None:
    info = tarfile.TarInfo("x")
    info.mtime = 1_700_000_000.5
    info.pax_headers = {"atime": "1e30"}
    assert member_times_ns(info) == (1_700_000_000_500_000_000, 1_700_000_000_500_000_000)
    info.pax_headers = {"atime": "12.25"}
    assert member_times_ns(info)[0] == 12_250_000_000


_NAMES = st.lists(
    st.sampled_from(["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "l"]), min_size=1, max_size=4
).map("/".join)
_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(str),
    st.text(max_size=8),
)
_PAX = st.dictionaries(
    st.sampled_from(
        ["mtime", "atime", "ctime", "uid", "gid", "uname", "linkpath", "path",
         "SCHILY.xattr.user.x", "SCHILY.xattr.trusted.overlay.opaque",
         "SCHILY.xattr.security.capability"]
    ),
    _VALUES,
    max_size=4,
)  # fmt: skip
_MEMBERS = st.lists(
    st.tuples(
        _NAMES,
        st.sampled_from(
            [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
        ),
        _NAMES,
        _PAX,
    ),
    min_size=1,
    max_size=5,
)


def _fuzz_tar(members: list[tuple[str, bytes, str, dict[str, str]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link, pax in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.pax_headers = {k: v for k, v in pax.items() if k != "size"}
            data = b"data" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MEMBERS, st.sampled_from(["layer", "cp"]))
def test_any_headers_give_a_result_or_a_domain_error(
    members: list[tuple[str, bytes, str, dict[str, str]]], door: str
) -> None:
    try:
        data = _fuzz_tar(members)
    except (ValueError, UnicodeError, tarfile.TarError):
        assume(False)  # tarfile itself cannot write it
        return
    with tempfile.TemporaryDirectory() as top:
        root = os.path.join(top, "root")
        os.mkdir(root)
        try:
            (_unpack if door == "layer" else _extract)(data, root)
        except WhaledError:
            pass
        assert os.listdir(top) == ["root"]  # nothing beside the root
