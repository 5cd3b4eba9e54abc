"""The bounds on every tar that enters: entries, name lengths, names in all, and the
uncompressed size (decompression bombs), at the parser, the unpacker and docker cp's
extraction (which removes what it created when a bound stops it)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from whaled.archive import tarsafe as t
from whaled.container import archive as cp
from whaled.errors import InvalidParameter

from .test_tarsafe_reader import build, dir_, reg


def _parse_all(data: bytes, limits: t.TarLimits = t.DEFAULT_LIMITS) -> int:
    parser = t.TarParser(t.TarInput(io.BytesIO(data)), limits=limits)
    return sum(1 for _ in parser)


def test_entry_count_is_bounded() -> None:
    data = build([reg(f"f{i}") for i in range(5)])
    assert _parse_all(data, t.TarLimits(entries=5)) == 5
    with pytest.raises(t.ArchiveLimit, match="more than 4 entries"):
        _parse_all(data, t.TarLimits(entries=4))


def test_long_names_and_link_targets_are_bounded_by_default() -> None:
    deep_ok = "d/" * (t.MAX_NAME // 2 - 1) + "f"  # a tree ~32,000 levels deep still fits
    assert _parse_all(build([reg(deep_ok)])) == 1
    too_long = "d/" * (t.MAX_NAME // 2) + "f"
    with pytest.raises(t.ArchiveLimit, match="name longer than 65536 bytes"):
        _parse_all(build([reg(too_long)]))
    link = tarfile.TarInfo("l")
    link.type = tarfile.LNKTYPE
    link.linkname = too_long
    with pytest.raises(t.ArchiveLimit, match="link target longer than"):
        _parse_all(build([(link, b"")]))
    # a GNU long name (not PAX) is measured the same way
    with pytest.raises(t.ArchiveLimit):
        _parse_all(build([reg(too_long)], tarfile.GNU_FORMAT))


def test_names_in_all_are_bounded() -> None:
    data = build([reg("x" * 100 + str(i)) for i in range(10)])
    assert _parse_all(data, t.TarLimits(names_total=2000)) == 10
    with pytest.raises(t.ArchiveLimit, match="bytes of entry names"):
        _parse_all(data, t.TarLimits(names_total=500))


def test_uncompressed_size_is_bounded_for_compressed_and_plain_streams() -> None:
    bomb = gzip.compress(build([reg("zeros", b"\0" * (8 << 20))]))
    assert len(bomb) < 64 << 10
    src, _ = t.open_stream(io.BytesIO(bomb), limit=1 << 20)
    with pytest.raises(t.ArchiveLimit, match="exceeds 1048576 bytes"):
        while src.read(1 << 16):
            pass
    plain = build([reg("small", b"x" * 1000)])
    src, _ = t.open_stream(io.BytesIO(plain), limit=len(plain))
    assert _parse_all(b"".join(iter(lambda: bytes(src.read(4096)), b""))) == 1


def test_a_bomb_stops_the_unpack(tmp_path: Path) -> None:
    bomb = gzip.compress(build([dir_("a"), reg("a/zeros", b"\0" * (8 << 20))]))
    src, _ = t.open_stream(io.BytesIO(bomb), limit=2 << 20)
    parser = t.TarParser(t.TarInput(src))
    with pytest.raises(t.ArchiveLimit):
        t.unpack_tar(parser, str(tmp_path), t.UnpackPolicy(owners=False))
    # (the layer store removes its temp dir; what was written is at most the bound)
    assert os.stat(tmp_path / "a" / "zeros").st_size <= 2 << 20


@pytest.mark.parametrize(
    ("available", "total", "budget"),
    [
        (100 << 30, 200 << 30, (100 << 30) - (1 << 30)),  # reserve capped at 1 GiB
        (50 << 20, 100 << 20, (50 << 20) - (5 << 20)),  # 5 % of a small file system
        (10 << 20, 1 << 40, 5 << 20),  # nearly full: half of what is free
        (0, 1 << 30, 0),
    ],
)
def test_budget_from_space(available: int, total: int, budget: int) -> None:
    assert t.budget_from_space(available, total) == budget


def test_space_budget_of_a_real_file_system(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    assert free // 2 <= t.space_budget(str(tmp_path)) <= free
    fd = os.open(tmp_path, os.O_PATH)
    try:
        assert free // 2 <= t.space_budget(fd) <= free
    finally:
        os.close(fd)


def test_cp_extraction_past_the_bound_removes_what_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "keep").write_text("mine")
    monkeypatch.setattr(cp, "space_budget", lambda _where: 2 << 20)
    bomb = gzip.compress(
        build(
            [
                dir_("etc"),
                reg("etc/new", b"new"),
                dir_("new"),
                dir_("new/sub"),
                reg("new/sub/small", b"s"),
                reg("deep/implicit/parents", b"p"),
                reg("new/zeros", b"\0" * (8 << 20)),
            ]
        )
    )
    with pytest.raises(t.ArchiveLimit):
        cp.extract_to(
            str(root),
            {},
            "/",
            io.BytesIO(bomb),
            container="c",
            no_overwrite_dir_non_dir=False,
            copy_uid_gid=False,
        )
    assert sorted(os.listdir(root)) == ["etc"]
    assert os.listdir(root / "etc") == ["keep"]
    assert (root / "etc" / "keep").read_text() == "mine"


def test_cp_extraction_within_the_bound_is_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cp, "space_budget", lambda _where: 2 << 20)
    data = gzip.compress(build([dir_("new"), reg("new/f", b"\0" * (1 << 20))]))
    cp.extract_to(
        str(tmp_path),
        {},
        "/",
        io.BytesIO(data),
        container="c",
        no_overwrite_dir_non_dir=False,
        copy_uid_gid=False,
    )
    assert os.stat(tmp_path / "new" / "f").st_size == 1 << 20


@pytest.mark.parametrize(
    "pax",
    [
        {"path": "a\0b"},
        {"linkpath": "x\0y"},
        {"SCHILY.xattr.user.a\0b": "v"},
    ],
)
def test_nul_bytes_in_names_are_a_bad_archive_not_a_crash(
    tmp_path: Path, pax: dict[str, str]
) -> None:
    """(ValueError from os.* was a 500 for import and load; Go's reader refuses them too.)"""
    info = tarfile.TarInfo("placeholder")
    info.type = tarfile.SYMTYPE
    info.linkname = "t"
    info.pax_headers = pax
    parser = t.TarParser(t.TarInput(io.BytesIO(build([(info, b"")]))))
    with pytest.raises(InvalidParameter, match="NUL byte"):
        t.unpack_tar(parser, str(tmp_path), t.UnpackPolicy(owners=False))
