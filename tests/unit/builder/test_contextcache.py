"""The build context cache: a context unpacked again is linked from a kept one where, and
only where, the content is the same (by fingerprint up to ``hold_max`` bytes, byte for byte
beyond); bounds, pruning, and contexts in use."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from whaled.builder.contextcache import HOLD_MAX, Context, ContextCache
from whaled.container import archive as cp

MTIME = 1_700_000_000


def _tar(files: dict[str, bytes], mtime: int = MTIME) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tf.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _unpack(cache: ContextCache, files: dict[str, bytes], mtime: int = MTIME) -> Context:
    ctx, writer = cache.open()
    ctx.make_dir()
    try:
        cp.extract_to(
            ctx.root, {}, "/", _tar(files, mtime), container="build context",
            no_overwrite_dir_non_dir=False, copy_uid_gid=False, files=writer,
        )  # fmt: skip
    finally:
        writer.close()
    return ctx


def _ino(ctx: Context, rel: str) -> int:
    return os.stat(os.path.join(ctx.root, rel)).st_ino


def _read(ctx: Context, rel: str) -> bytes:
    return Path(ctx.root, rel).read_bytes()


BIG = bytes(range(256)) * (12 * 1024)  # 3 MiB: several chunks

#: both ways of checking content: by fingerprint (every file here is below HOLD_MAX) and
#: byte for byte (hold_max 1: every file but the empty and one-byte ones)
BOTH_WAYS = pytest.mark.parametrize("hold_max", [HOLD_MAX, 1], ids=["fingerprint", "bytes"])


@BOTH_WAYS
def test_an_unchanged_context_is_linked_and_keeps_its_digests(
    tmp_path: Path, hold_max: int
) -> None:
    cache = ContextCache(str(tmp_path), hold_max=hold_max)
    files = {"Dockerfile": b"FROM x\n", "data/big": BIG, "data/small": b"abc\n"}
    first = _unpack(cache, files)
    first.remember_digest(os.path.join(first.root, "data/big"), b"D" * 32)
    cache.keep(first)
    second = _unpack(cache, files)
    assert second.reused == 3
    assert all(_ino(second, rel) == _ino(first, rel) for rel in files)
    assert second.known_digest(os.path.join(second.root, "data/big")) == b"D" * 32
    assert second.known_digest(os.path.join(second.root, "data/small")) is None


@BOTH_WAYS
def test_same_size_and_time_but_other_bytes_is_written_anew(tmp_path: Path, hold_max: int) -> None:
    cache = ContextCache(str(tmp_path), hold_max=hold_max)
    first = _unpack(cache, {"big": BIG, "small": b"abc\n", "same": b"same\n"})
    first.remember_digest(os.path.join(first.root, "big"), b"D" * 32)
    cache.keep(first)
    changed = bytearray(BIG)
    changed[(2 << 20) + 5] ^= 0xFF  # in the third chunk: byte for byte, two are copied over
    second = _unpack(cache, {"big": bytes(changed), "small": b"abd\n", "same": b"same\n"})
    assert second.reused == 1 and _ino(second, "same") == _ino(first, "same")
    assert _read(second, "big") == bytes(changed) and _read(second, "small") == b"abd\n"
    assert _ino(second, "big") != _ino(first, "big")
    assert _read(first, "big") == BIG  # the kept file is untouched
    assert second.known_digest(os.path.join(second.root, "big")) is None
    assert os.stat(os.path.join(second.root, "big")).st_mtime == MTIME


@BOTH_WAYS
def test_other_facts_are_never_compared(tmp_path: Path, hold_max: int) -> None:
    cache = ContextCache(str(tmp_path), hold_max=hold_max)
    cache.keep(_unpack(cache, {"a": b"same\n", "b": b"same\n"}))
    other_time = _unpack(cache, {"a": b"same\n"}, mtime=MTIME + 1)
    assert other_time.reused == 0 and _read(other_time, "a") == b"same\n"
    longer = _unpack(cache, {"b": b"same\nmore\n"})
    assert longer.reused == 0 and _read(longer, "b") == b"same\nmore\n"


def test_a_file_changed_back_and_forth_is_linked_only_when_its_content_is_the_kept_one(
    tmp_path: Path,
) -> None:
    cache = ContextCache(str(tmp_path))
    a, b = BIG, BIG[:-1] + b"!"
    first = _unpack(cache, {"f": a})
    cache.keep(first)
    other = _unpack(cache, {"f": b})  # same facts, other content: written, kept too
    assert other.reused == 0 and _read(other, "f") == b
    cache.keep(other)
    again = _unpack(cache, {"f": a})  # the older kept file is the one that matches
    assert again.reused == 1 and _ino(again, "f") == _ino(first, "f")
    assert again.fingerprints["f"] == first.fingerprints["f"] != other.fingerprints["f"]


def test_fingerprints_are_keyed_per_cache(tmp_path: Path) -> None:
    one = _unpack(ContextCache(str(tmp_path / "one")), {"f": b"same\n"})
    two = _unpack(ContextCache(str(tmp_path / "two")), {"f": b"same\n"})
    assert len(one.fingerprints["f"]) == 16
    assert one.fingerprints["f"] != two.fingerprints["f"]


def test_the_oldest_contexts_go_beyond_the_bounds_and_prune_takes_the_rest(
    tmp_path: Path,
) -> None:
    cache = ContextCache(str(tmp_path), max_kept=2, max_bytes=1 << 20)
    contexts = [_unpack(cache, {"f": str(i).encode()}) for i in range(3)]
    for ctx in contexts:
        cache.keep(ctx)
    assert cache.kept() == [contexts[2], contexts[1]]
    assert not os.path.exists(contexts[0].root)
    too_big = _unpack(cache, {"f": BIG})  # 3 MiB > max_bytes: not kept
    cache.keep(too_big)
    assert not os.path.exists(too_big.root) and len(cache.kept()) == 2
    gone = cache.prune()
    assert gone == [contexts[2], contexts[1]] and cache.kept() == []
    assert os.listdir(tmp_path) == []


def test_a_context_being_compared_against_is_not_removed(tmp_path: Path) -> None:
    cache = ContextCache(str(tmp_path), max_kept=1)
    old = _unpack(cache, {"f": b"1"})
    cache.keep(old)
    ctx, writer = cache.open()  # compares against ``old`` until closed
    cache.keep(_unpack(cache, {"f": b"2"}))
    assert cache.prune() != [old] and os.path.exists(old.root)
    writer.close()
    cache.keep(ctx)
    assert not os.path.exists(old.root) and cache.kept() == [ctx]
