from __future__ import annotations

import json

import pytest

from whaled.errors import InvalidParameter
from whaled.image.configs import (
    EMPTY_LAYER_DIFF_ID,
    commit_config,
    parse_platform,
    target_reference,
)

PARENT = {
    "architecture": "arm64",
    "os": "linux",
    "variant": "v8",
    "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "base"}],
}


def _commit(layer_diff_id: str, **overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "container_id": "c" * 64,
        "parent_config": PARENT,
        "parent_diff_ids": ("sha256:" + "1" * 64,),
        "container_config": {"Cmd": ["sh", "-c", "echo hi"]},
        "new_config": {"Cmd": ["sh"]},
        "layer_diff_id": layer_diff_id,
        "created": "2025-01-01T00:00:00.000000001Z",
        "author": "me",
        "comment": "",
        "host_os": "linux",
        "host_arch": "amd64",
    }
    kwargs.update(overrides)
    doc: dict[str, object] = json.loads(commit_config(**kwargs))  # type: ignore[arg-type]
    return doc


def test_commit_config_adds_a_history_entry_and_the_layer() -> None:
    doc = _commit("sha256:" + "2" * 64)
    assert doc["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "2" * 64],
    }
    assert doc["history"] == [
        PARENT["history"][0],  # type: ignore[index]
        {
            "created": "2025-01-01T00:00:00.000000001Z",
            "author": "me",
            "created_by": "sh -c echo hi",
        },
    ]
    assert doc["architecture"] == "arm64" and doc["variant"] == "v8"  # the parent's platform
    assert doc["config"] == {"Cmd": ["sh"]} and doc["container"] == "c" * 64
    assert "comment" not in doc  # empty strings are left out


def test_commit_config_of_an_empty_diff_marks_an_empty_layer() -> None:
    doc = _commit(EMPTY_LAYER_DIFF_ID, parent_config=None, parent_diff_ids=(), comment="x")
    assert doc["rootfs"] == {"type": "layers", "diff_ids": []}
    assert doc["history"][-1]["empty_layer"] is True  # type: ignore[index]
    assert doc["architecture"] == "amd64" and doc["os"] == "linux"  # the host's platform
    assert "variant" not in doc and doc["comment"] == "x"


def test_parse_platform() -> None:
    assert parse_platform(None) == (None, None, None)
    assert parse_platform("Linux/arm64/v8") == ("linux", "arm64", "v8")
    assert parse_platform("linux") == ("linux", None, None)
    with pytest.raises(InvalidParameter, match="expected os"):
        parse_platform("linux//v8")
    with pytest.raises(InvalidParameter, match='"windows" cannot be used'):
        parse_platform("windows/amd64")


def test_target_reference() -> None:
    assert target_reference(None, "x") is None
    ref = target_reference("busybox", "1")
    assert ref is not None and ref.familiar == "busybox:1"
    latest = target_reference("busybox", None)
    assert latest is not None and latest.familiar == "busybox:latest"
    with pytest.raises(InvalidParameter, match="cannot import digest reference"):
        target_reference("busybox@sha256:" + "a" * 64, None)
