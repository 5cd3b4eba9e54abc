from __future__ import annotations

import gzip
import io
import os
import re
import stat
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from whaled.archive.tarsafe import ArchiveLimit
from whaled.container import archive as archive_module
from whaled.container.archive import (
    GO_MODE_CHAR_DEVICE,
    GO_MODE_DEVICE,
    GO_MODE_DIR,
    GO_MODE_NAMED_PIPE,
    GO_MODE_SETUID,
    GO_MODE_STICKY,
    GO_MODE_SYMLINK,
    archive_path,
    container_abs_path,
    entry_parts,
    export_rootfs,
    extract_to,
    format_go_time,
    go_base,
    go_file_mode,
    resolve,
    stat_path,
)
from whaled.errors import Forbidden, InvalidParameter, NotFound

UID, GID = os.getuid(), os.getgid()


# ----------------------------------------------------------------------------- helpers


def write(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A small container rootfs: /etc/passwd, /etc/hosts placeholder, /tmp, /bin/sh."""
    root = tmp_path / "rootfs"
    write(root / "etc" / "passwd", "container-passwd\n")
    write(root / "etc" / "hosts", "")  # the runtime's mount-point placeholder
    write(root / "bin" / "sh", "#!fake\n", 0o755)
    (root / "tmp").mkdir()
    (root / "etc").chmod(0o755)
    return root


def read_tar(chunks: Iterable[bytes]) -> tuple[bytes, list[tarfile.TarInfo], tarfile.TarFile]:
    raw = b"".join(chunks)
    tf = tarfile.open(fileobj=io.BytesIO(raw))
    return raw, tf.getmembers(), tf


def make_tar(
    entries: Iterable[tuple[str, bytes, str | bytes, int]], *, gz: bool = False
) -> io.BytesIO:
    """entries: (name, type, data-or-linkname, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, typ, payload, mode in entries:
            info = tarfile.TarInfo(name)
            info.type = typ
            info.mode = mode
            info.uid, info.gid = UID, GID
            info.mtime = 1_600_000_000
            if typ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                assert isinstance(payload, str)
                info.linkname = payload
                tf.addfile(info)
            elif typ == tarfile.REGTYPE:
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    data = buf.getvalue()
    if gz:
        data = gzip.compress(data)
    return io.BytesIO(data)


def extract(
    root: Path,
    path: str,
    tar: io.BytesIO,
    *,
    mounts: dict[str, str] | None = None,
    no_overwrite_dir_non_dir: bool = False,
    copy_uid_gid: bool = False,
    readonly_rootfs: bool = False,
    readonly_mounts: Sequence[str] = (),
    owner: tuple[int, int] | None = None,
) -> None:
    extract_to(
        str(root),
        mounts or {},
        path,
        tar,
        container="ctr",
        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
        copy_uid_gid=copy_uid_gid,
        readonly_rootfs=readonly_rootfs,
        readonly_mounts=readonly_mounts,
        owner=owner,
    )


# ----------------------------------------------------------------------------- pure rules


def test_go_file_mode_bits() -> None:
    assert go_file_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_file_mode(stat.S_IFDIR | 0o755) == GO_MODE_DIR | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == GO_MODE_SYMLINK | 0o777
    assert go_file_mode(stat.S_IFIFO | 0o600) == GO_MODE_NAMED_PIPE | 0o600
    assert go_file_mode(stat.S_IFCHR | 0o666) == GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE | 0o666
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == GO_MODE_SETUID | 0o755
    assert go_file_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == GO_MODE_DIR | GO_MODE_STICKY | 0o777
    assert GO_MODE_DIR == 0x80000000 and GO_MODE_SYMLINK == 0x8000000


def test_format_go_time_like_go_rfc3339nano() -> None:
    ns = 1_700_000_000 * 1_000_000_000
    assert format_go_time(ns + 123_456_789, 0) == "2023-11-14T22:13:20.123456789Z"
    assert format_go_time(ns + 500_000_000, 0) == "2023-11-14T22:13:20.5Z"
    assert format_go_time(ns, 0) == "2023-11-14T22:13:20Z"
    assert format_go_time(ns, 3600) == "2023-11-14T23:13:20+01:00"
    assert format_go_time(ns, -(5 * 3600 + 30 * 60)) == "2023-11-14T16:43:20-05:30"


def test_container_abs_path_keeps_trailing_dot_and_slash() -> None:
    assert container_abs_path("etc") == "/etc"
    assert container_abs_path("/etc/") == "/etc/"
    assert container_abs_path("/etc/.") == "/etc/."
    assert container_abs_path("etc/./") == "/etc/./"
    assert container_abs_path("//etc//x/../") == "/etc/"
    assert container_abs_path("/../../etc") == "/etc"
    assert container_abs_path("/") == "/"
    assert container_abs_path(".") == "/."
    assert go_base("/etc/") == "etc"
    assert go_base("/etc/.") == "."
    assert go_base("/") == "/"
    with pytest.raises(InvalidParameter):
        container_abs_path("/etc\x00")


def test_entry_parts_refuses_climbing_out() -> None:
    assert entry_parts("./a//b/", "/tmp") == ("a", "b")
    assert entry_parts("/abs/x", "/tmp") == ("abs", "x")  # relative to the extraction dir
    assert entry_parts("/../x", "/tmp") == ("x",)
    assert entry_parts("a/../b", "/tmp") == ("b",)
    assert entry_parts(".", "/tmp") == ()
    for bad in ("../x", "a/../../x", ".."):
        with pytest.raises(InvalidParameter, match=re.escape(f'"{bad}" is outside of "/tmp"')):
            entry_parts(bad, "/tmp")


# ----------------------------------------------------------------------------- resolution


def test_absolute_symlink_to_etc_reads_the_containers_etc(rootfs: Path) -> None:
    (rootfs / "lnk").symlink_to("/etc")
    assert resolve(str(rootfs), {}, "/lnk/passwd") == f"{rootfs}/etc/passwd"
    info, stream = archive_path(str(rootfs), {}, "/lnk/passwd", container="c")
    _, members, tf = read_tar(stream)
    assert [m.name for m in members] == ["passwd"]
    f = tf.extractfile(members[0])
    assert f is not None and f.read() == b"container-passwd\n"
    assert info["size"] == len(b"container-passwd\n")


def test_dotdot_never_climbs_above_the_container_root(rootfs: Path) -> None:
    (rootfs / "a" / "b").mkdir(parents=True)
    (rootfs / "a" / "b" / "up").symlink_to("../../../../../../../etc")
    assert resolve(str(rootfs), {}, "/a/b/up/passwd") == f"{rootfs}/etc/passwd"
    assert resolve(str(rootfs), {}, "/../../../etc/passwd") == f"{rootfs}/etc/passwd"
    _, stream = archive_path(str(rootfs), {}, "/a/b/up/passwd", container="c")
    _, members, tf = read_tar(stream)
    f = tf.extractfile(members[0])
    assert f is not None and f.read() == b"container-passwd\n"


def test_symlink_to_a_host_path_stays_in_the_container(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret", "host secret")
    (rootfs / "escape").symlink_to(str(outside))  # absolute: means <root>/<that path>
    with pytest.raises(NotFound):
        stat_path(str(rootfs), {}, "/escape/secret", container="c")
    assert resolve(str(rootfs), {}, "/escape/secret") == f"{rootfs}{outside}/secret"


def test_symlink_loop_is_refused(rootfs: Path) -> None:
    (rootfs / "loop").symlink_to("loop")
    with pytest.raises(InvalidParameter, match="too many links"):
        resolve(str(rootfs), {}, "/loop/x")


def test_resolve_follow_final(rootfs: Path) -> None:
    (rootfs / "lnk").symlink_to("etc")
    assert resolve(str(rootfs), {}, "/lnk") == f"{rootfs}/etc"
    assert resolve(str(rootfs), {}, "/lnk", follow_final=False) == f"{rootfs}/lnk"
    assert resolve(str(rootfs), {}, "/lnk/", follow_final=False) == f"{rootfs}/etc"


def test_bind_mount_over_etc_hosts(rootfs: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "containers" / "hosts"
    write(hosts, "127.0.0.1 localhost\n")
    mounts = {"/etc/hosts": str(hosts)}
    assert resolve(str(rootfs), mounts, "/etc/hosts") == str(hosts)
    info = stat_path(str(rootfs), mounts, "/etc/hosts", container="c")
    assert info["size"] == len("127.0.0.1 localhost\n")
    _, stream = archive_path(str(rootfs), mounts, "/etc", container="c")
    _, members, tf = read_tar(stream)
    by_name = {m.name: m for m in members}
    f = tf.extractfile(by_name["etc/hosts"])
    assert f is not None and f.read() == b"127.0.0.1 localhost\n"


def test_mount_longest_destination_wins_and_links_inside_mounts(
    rootfs: Path, tmp_path: Path
) -> None:
    vol, sub = tmp_path / "vol", tmp_path / "sub"
    write(vol / "a", "vol-a")
    write(sub / "b", "sub-b")
    (vol / "toetc").symlink_to("/etc")  # resolved in the container, not the host
    mounts = {"/data": str(vol), "/data/sub": str(sub)}
    assert resolve(str(rootfs), mounts, "/data/a") == f"{vol}/a"
    assert resolve(str(rootfs), mounts, "/data/sub/b") == f"{sub}/b"
    assert resolve(str(rootfs), mounts, "/data/toetc/passwd") == f"{rootfs}/etc/passwd"
    _, stream = archive_path(str(rootfs), mounts, "/data", container="c")
    _, members, _ = read_tar(stream)
    assert [m.name for m in members] == ["data", "data/a", "data/sub", "data/sub/b", "data/toetc"]


def test_mount_destination_is_resolved_in_the_container(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "run").mkdir()
    (rootfs / "var").mkdir()
    (rootfs / "var" / "run").symlink_to("../run")
    sock = tmp_path / "docker.sock"
    write(sock, "x")
    mounts = {"/var/run/docker.sock": str(sock)}
    assert resolve(str(rootfs), mounts, "/run/docker.sock") == str(sock)
    assert resolve(str(rootfs), mounts, "/var/run/docker.sock") == str(sock)


# ----------------------------------------------------------------------------- stat


def test_stat_header_shape(rootfs: Path) -> None:
    (rootfs / "lnk").symlink_to("etc/passwd")
    d = stat_path(str(rootfs), {}, "/etc", container="c")
    assert list(d) == ["name", "size", "mode", "mtime", "linkTarget"]
    assert d["name"] == "etc" and d["linkTarget"] == ""
    assert d["mode"] == GO_MODE_DIR | 0o755
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", d["mtime"])

    f = stat_path(str(rootfs), {}, "etc/passwd", container="c")
    assert f["mode"] == 0o644 and f["size"] == len("container-passwd\n") and f["name"] == "passwd"

    link = stat_path(str(rootfs), {}, "/lnk", container="c")
    assert link["mode"] == GO_MODE_SYMLINK | 0o777
    assert link["linkTarget"] == "/etc/passwd"
    assert link["name"] == "lnk"

    # "/etc/." names the directory "." (the CLI uses this to copy the contents)
    assert stat_path(str(rootfs), {}, "/etc/.", container="c")["name"] == "."


def test_missing_path_has_dockerds_message(rootfs: Path) -> None:
    with pytest.raises(NotFound, match=r"^Could not find the file /nope in container web$"):
        stat_path(str(rootfs), {}, "/nope", container="web")
    with pytest.raises(NotFound, match="Could not find the file /etc/passwd/ in container web"):
        archive_path(str(rootfs), {}, "/etc/passwd/", container="web")


# ----------------------------------------------------------------------------- archive


def test_archive_dir_names_start_with_the_base(rootfs: Path) -> None:
    for path in ("/etc", "/etc/", "etc"):
        info, stream = archive_path(str(rootfs), {}, path, container="c")
        raw, members, _ = read_tar(stream)
        assert [m.name for m in members] == ["etc", "etc/hosts", "etc/passwd"], path
        assert raw[:4] == b"etc/"
        assert info["name"] == "etc"
        assert members[0].isdir() and members[0].mode == 0o755
        assert members[2].mode == 0o644 and members[2].uid == UID


def test_archive_trailing_dot_copies_contents(rootfs: Path) -> None:
    info, stream = archive_path(str(rootfs), {}, "/etc/.", container="c")
    raw, members, _ = read_tar(stream)
    assert raw[:2] == b"./" and raw[2] == 0
    assert [m.name for m in members] == [".", "./hosts", "./passwd"]
    assert info["name"] == "."


def test_archive_root(rootfs: Path) -> None:
    _, stream = archive_path(str(rootfs), {}, "/", container="c")
    raw, members, _ = read_tar(stream)
    assert raw[:2] == b"/\x00"
    names = [m.name for m in members]
    assert "/bin/sh" in names and "/etc/passwd" in names


def test_archive_final_symlink_is_the_link_itself(rootfs: Path) -> None:
    (rootfs / "lnk").symlink_to("/etc")
    info, stream = archive_path(str(rootfs), {}, "/lnk", container="c")
    _, members, _ = read_tar(stream)
    assert len(members) == 1
    assert members[0].name == "lnk" and members[0].issym() and members[0].linkname == "/etc"
    assert info["linkTarget"] == "/etc"
    # with a trailing slash the link is followed, names keep the requested base
    info, stream = archive_path(str(rootfs), {}, "/lnk/", container="c")
    _, members, _ = read_tar(stream)
    assert [m.name for m in members] == ["lnk", "lnk/hosts", "lnk/passwd"]
    assert info["mode"] & GO_MODE_DIR and info["linkTarget"] == ""


def test_archive_hardlinks_fifos_and_streaming(rootfs: Path) -> None:
    big = rootfs / "big"
    big.write_bytes(os.urandom(3 << 20))
    os.link(big, rootfs / "big2")
    os.mkfifo(rootfs / "fifo")
    _, stream = archive_path(str(rootfs), {}, "/", container="c")
    chunks = list(stream)
    assert max(len(c) for c in chunks) <= 1 << 20  # streamed, never the whole file at once
    _, members, tf = read_tar(chunks)
    by_name = {m.name: m for m in members}
    assert by_name["/big"].isreg() and by_name["/big2"].islnk()
    assert by_name["/big2"].linkname == "/big"
    assert by_name["/fifo"].isfifo()
    f = tf.extractfile(by_name["/big"])
    assert f is not None and f.read() == big.read_bytes()


def test_unconsumed_archive_stream_releases_its_descriptors(rootfs: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        _, stream = archive_path(str(rootfs), {}, "/etc", container="c")
        next(stream)
        del stream
        _, stream = archive_path(str(rootfs), {}, "/etc", container="c")
        del stream
    assert len(os.listdir("/proc/self/fd")) <= before + 1


# ----------------------------------------------------------------------------- extract


def test_extract_gzip_tar(rootfs: Path) -> None:
    tar = make_tar(
        [
            ("app", tarfile.DIRTYPE, b"", 0o750),
            ("app/run.sh", tarfile.REGTYPE, b"echo hi\n", 0o4755),
            ("app/link", tarfile.SYMTYPE, "/etc/passwd", 0o777),
            ("app/hard", tarfile.LNKTYPE, "app/run.sh", 0o644),
        ],
        gz=True,
    )
    extract(rootfs, "/tmp", tar)
    app = rootfs / "tmp" / "app"
    assert (app / "run.sh").read_bytes() == b"echo hi\n"
    assert stat.S_IMODE((app / "run.sh").stat().st_mode) == 0o4755
    assert stat.S_IMODE(app.stat().st_mode) == 0o750
    assert app.stat().st_mtime == 1_600_000_000
    assert os.readlink(app / "link") == "/etc/passwd"
    assert (app / "hard").stat().st_ino == (app / "run.sh").stat().st_ino


def test_extract_into_symlinked_parent_stays_in_container(rootfs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # a link in the container whose target, read on the host, is a host directory
    (rootfs / "tmp" / "out").symlink_to(str(outside))
    extract(rootfs, "/tmp", make_tar([("out/new", tarfile.REGTYPE, b"x", 0o644)]))
    assert list(outside.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/") / "new").read_bytes() == b"x"


def test_extract_symlink_member_then_file_through_it(rootfs: Path, tmp_path: Path) -> None:
    # Every target below is, read on the host, a directory of this test: a regression can
    # only write there (where we look), never to the real /etc.
    outside, climbed = tmp_path / "outside", tmp_path / "climbed"
    outside.mkdir()
    climbed.mkdir()
    (rootfs / "etc" / "passwd").chmod(0o644)
    tar = make_tar(
        [
            ("evil", tarfile.SYMTYPE, str(outside), 0o777),
            ("evil/pwned", tarfile.REGTYPE, b"x", 0o644),
            # from <root>/tmp on the host this climbs to the host's / and then into climbed
            ("up", tarfile.SYMTYPE, "../" * 30 + str(climbed).lstrip("/"), 0o777),
            ("up/pwned", tarfile.REGTYPE, b"y", 0o644),
        ]
    )
    extract(rootfs, "/tmp", tar)
    assert list(outside.iterdir()) == []
    assert list(climbed.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (rootfs / str(climbed).lstrip("/") / "pwned").read_bytes() == b"y"


def test_extract_refuses_entry_climbing_out(rootfs: Path) -> None:
    tar = make_tar([("ok", tarfile.REGTYPE, b"1", 0o644), ("../x", tarfile.REGTYPE, b"x", 0o644)])
    with pytest.raises(InvalidParameter, match=re.escape('"../x" is outside of "/tmp"')):
        extract(rootfs, "/tmp", tar)
    assert not (rootfs / "x").exists()
    assert not (rootfs.parent / "x").exists()
    tar = make_tar([("h", tarfile.LNKTYPE, "../etc/passwd", 0o644)])
    with pytest.raises(InvalidParameter, match="outside of"):
        extract(rootfs, "/tmp", tar)


@pytest.mark.parametrize("n", [300, 301])
def test_extract_many_directories_and_cross_links(rootfs: Path, n: int) -> None:
    # Enough directories to overflow the parent cache at every parity, with hard links
    # whose target directory is looked up while the member's own directory is in use.
    entries: list[tuple[str, bytes, str | bytes, int]] = []
    for i in range(n):
        entries.append((f"t{i}/f", tarfile.REGTYPE, f"{i}".encode(), 0o644))
    for i in range(n):
        entries.append((f"d{i}/h", tarfile.LNKTYPE, f"t{i}/f", 0o644))
    before = len(os.listdir("/proc/self/fd"))
    extract(rootfs, "/tmp", make_tar(entries))
    assert len(os.listdir("/proc/self/fd")) == before
    for i in range(n):
        h = rootfs / "tmp" / f"d{i}" / "h"
        assert h.read_bytes() == f"{i}".encode(), i
        assert h.stat().st_ino == (rootfs / "tmp" / f"t{i}" / "f").stat().st_ino


def test_extract_to_symlinked_destination_follows_it(rootfs: Path, tmp_path: Path) -> None:
    inside = rootfs / str(tmp_path / "dest").lstrip("/")
    inside.mkdir(parents=True)
    (rootfs / "t").symlink_to(str(tmp_path / "dest"))  # absolute, in the container
    extract(rootfs, "/t", make_tar([("f", tarfile.REGTYPE, b"x", 0o644)]))
    assert (inside / "f").read_bytes() == b"x"
    assert not (tmp_path / "dest").exists()


def test_extract_destination_errors(rootfs: Path) -> None:
    with pytest.raises(NotFound, match=r"^Could not find the file /nope in container ctr$"):
        extract(rootfs, "/nope", make_tar([]))
    with pytest.raises(InvalidParameter, match=r"^extraction point is not a directory$"):
        extract(rootfs, "/etc/passwd", make_tar([]))


def test_no_overwrite_dir_non_dir(rootfs: Path) -> None:
    (rootfs / "tmp" / "d").mkdir()
    write(rootfs / "tmp" / "f", "file")
    with pytest.raises(
        InvalidParameter, match=re.escape('cannot overwrite directory "/tmp/d" with non-directory')
    ):
        extract(
            rootfs,
            "/tmp",
            make_tar([("d", tarfile.REGTYPE, b"x", 0o644)]),
            no_overwrite_dir_non_dir=True,
        )
    with pytest.raises(
        InvalidParameter, match=re.escape('cannot overwrite non-directory "/tmp/f" with directory')
    ):
        extract(
            rootfs,
            "/tmp",
            make_tar([("f", tarfile.DIRTYPE, b"", 0o755)]),
            no_overwrite_dir_non_dir=True,
        )
    assert (rootfs / "tmp" / "d").is_dir() and (rootfs / "tmp" / "f").is_file()
    # without the flag both are replaced, like dockerd
    extract(
        rootfs,
        "/tmp",
        make_tar([("d", tarfile.REGTYPE, b"x", 0o644), ("f", tarfile.DIRTYPE, b"", 0o755)]),
    )
    assert (rootfs / "tmp" / "d").read_bytes() == b"x" and (rootfs / "tmp" / "f").is_dir()


def test_extract_read_only_rootfs_and_mounts(rootfs: Path, tmp_path: Path) -> None:
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    mounts = {"/data": str(vol), "/ro": str(ro)}
    tar = make_tar([("f", tarfile.REGTYPE, b"x", 0o644)])
    with pytest.raises(Forbidden, match=r"^container rootfs is marked read-only$"):
        extract(rootfs, "/tmp", tar, readonly_rootfs=True, mounts=mounts)
    with pytest.raises(Forbidden, match=r"^mounted volume is marked read-only$"):
        extract(rootfs, "/ro", tar, mounts=mounts, readonly_mounts=["/ro"])
    tar.seek(0)
    extract(rootfs, "/data", tar, readonly_rootfs=True, mounts=mounts)
    assert (vol / "f").read_bytes() == b"x"
    # a member that leaves the writable mount through a link is refused too
    (rootfs / str(tmp_path).lstrip("/")).mkdir(parents=True)
    (vol / "toroot").symlink_to(str(tmp_path))  # the container's <tmp_path>, in the rootfs
    tar = make_tar([("toroot/g", tarfile.REGTYPE, b"x", 0o644)])
    with pytest.raises(Forbidden, match="read-only"):
        extract(rootfs, "/data", tar, readonly_rootfs=True, mounts=mounts)
    assert not (rootfs / str(tmp_path).lstrip("/") / "g").exists()
    assert not (tmp_path / "g").exists()


def test_extract_copy_uid_gid_with_owner(rootfs: Path) -> None:
    tar = make_tar([("f", tarfile.REGTYPE, b"x", 0o644)])
    extract(rootfs, "/tmp", tar, copy_uid_gid=True, owner=(UID, GID))
    st = (rootfs / "tmp" / "f").stat()
    assert (st.st_uid, st.st_gid) == (UID, GID)


def test_extract_empty_and_garbage(rootfs: Path) -> None:
    extract(rootfs, "/tmp", io.BytesIO(b""))
    with pytest.raises(InvalidParameter):
        extract(rootfs, "/tmp", io.BytesIO(b"this is not a tar archive at all" * 40))


def test_extract_into_mount_point_file_is_refused(rootfs: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    write(hosts, "orig")
    tar = make_tar([("hosts", tarfile.REGTYPE, b"new", 0o644)])
    with pytest.raises(InvalidParameter, match="mount point"):
        extract(rootfs, "/etc", tar, mounts={"/etc/hosts": str(hosts)})
    assert hosts.read_text() == "orig"


# ----------------------------------------------------------------------------- export


def test_export_round_trips_special_files(rootfs: Path, tmp_path: Path) -> None:
    os.mkfifo(rootfs / "tmp" / "fifo")
    (rootfs / "bin" / "busybox").symlink_to("sh")
    os.link(rootfs / "bin" / "sh", rootfs / "bin" / "sh2")
    _, members, tf = read_tar(export_rootfs(str(rootfs)))
    names = [m.name for m in members]
    assert names == [
        "bin",
        "bin/busybox",
        "bin/sh",
        "bin/sh2",
        "etc",
        "etc/hosts",
        "etc/passwd",
        "tmp",
        "tmp/fifo",
    ]
    by_name = {m.name: m for m in members}
    assert by_name["tmp/fifo"].isfifo()
    assert by_name["bin/busybox"].issym() and by_name["bin/busybox"].linkname == "sh"
    assert by_name["bin/sh2"].islnk() and by_name["bin/sh2"].linkname == "bin/sh"
    assert by_name["bin/sh"].mode == 0o755
    # and back: extracting the export into an empty container gives the same tree
    other = tmp_path / "other"
    other.mkdir()
    extract(other, "/", io.BytesIO(b"".join(export_rootfs(str(rootfs)))))
    assert stat.S_ISFIFO(os.lstat(other / "tmp" / "fifo").st_mode)
    assert os.readlink(other / "bin" / "busybox") == "sh"
    assert (other / "etc" / "passwd").read_text() == "container-passwd\n"
    tf.close()


def test_a_refused_archive_leaves_nothing_and_its_roll_back_does_not_grow_with_depth_squared(
    rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for a few bytes only: the last member crosses it, and what the archive created
    # goes again, newest first: a member 1500 levels deep (its parents made on the way),
    # a file merged into a directory that was there (which stays, with its own file).
    write(rootfs / "tmp" / "keep" / "mine", "mine")
    depth = 1500
    members: list[tuple[str, bytes, str | bytes, int]] = [
        ("d/" * depth + "f", tarfile.REGTYPE, b"ok", 0o644),
        ("keep/new", tarfile.REGTYPE, b"n", 0o644),
        ("x/y/z", tarfile.REGTYPE, b"z", 0o644),
    ]
    # all but the last member fit, with room for a read ahead of the tar reader
    room = len(make_tar(members).getvalue()) + (2 << 20)
    tar = make_tar([*members, ("big", tarfile.REGTYPE, bytes(8 << 20), 0o644)])
    monkeypatch.setattr(archive_module, "space_budget", lambda fd: room)
    opens = 0
    real_open = os.open

    def counting_open(*args: object, **kwargs: object) -> int:
        nonlocal opens
        opens += 1
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting_open)
    with pytest.raises(ArchiveLimit):
        extract(rootfs, "/tmp", tar)
    monkeypatch.undo()
    assert sorted(os.listdir(rootfs / "tmp")) == ["keep"]
    assert os.listdir(rootfs / "tmp" / "keep") == ["mine"]
    # one walk down and one back up: a few opens per level (a walk from the top for each
    # removal was depth²/2, over a million here)
    assert opens < 10 * depth, opens
