"""The on-disk container store (real files in a temp dir)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from whaled.container.model import Container
from whaled.container.store import ContainerStore
from whaled.errors import Conflict, InvalidParameter, NoSuchContainer


def make(cid: str, name: str) -> Container:
    return Container(
        id=cid,
        name=name,
        created="2026-01-01T00:00:00Z",
        image_id="sha256:x",
        image_ref="busybox",
        path="true",
        args=[],
        config={},
        host_config={},
    )


def test_reserve_get_rename_delete_and_reload(tmp_path: Any) -> None:
    store = ContainerStore(str(tmp_path))
    a = make("abc123" + "0" * 58, "web")
    b = make("abd456" + "0" * 58, "db")
    store.reserve(a)
    store.reserve(b)
    assert store.get("web") is a and store.get("/db") is b
    assert store.get("abc") is a
    with pytest.raises(InvalidParameter, match="multiple IDs"):
        store.get("ab")
    with pytest.raises(NoSuchContainer, match="No such container: nope"):
        store.get("nope")
    with pytest.raises(Conflict, match='The container name "/web" is already in use'):
        store.reserve(make("f" * 64, "web"))
    store.rename(a, "front")
    with pytest.raises(NoSuchContainer):
        store.get("web")
    fresh = ContainerStore(str(tmp_path))
    assert {c.name for c in fresh.load_all()} == {"front", "db"}
    fresh.delete(b.id)
    assert not os.path.exists(fresh.dir_of(b.id))
    # Its files wait aside until ``empty_trash`` (or the next ``load_all``).
    assert [n for n in os.listdir(store.root) if n.startswith(".trash-")] == [".trash-" + b.id]
    assert [c.name for c in ContainerStore(str(tmp_path)).load_all()] == ["front"]
    assert sorted(os.listdir(store.root)) == [a.id]


def test_unreadable_record_is_skipped(tmp_path: Any) -> None:
    store = ContainerStore(str(tmp_path))
    os.makedirs(os.path.join(store.root, "broken"))
    with open(os.path.join(store.root, "broken", "container.json"), "w") as f:
        f.write("{not json")
    assert store.load_all() == []
