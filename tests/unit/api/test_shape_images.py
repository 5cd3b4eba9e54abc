"""Wire shapes of the image endpoints, the JSON progress messages and progress throttling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from whaled.api.shape.images import (
    DF_TYPES,
    GO_ZERO_TIME,
    container_config,
    progress_json,
    rfc3339_nano,
    shape_delete_records,
    shape_disk_usage,
    shape_history,
    shape_image_list,
    shape_inspect,
    shape_prune,
    shape_summary,
)
from whaled.api.streams import (
    encode_message,
    error_message,
    progress_bar,
    status_message,
    stream_message,
)
from whaled.daemon.images import ProgressThrottle
from whaled.image.archive import ProgressEvent
from whaled.image.store import DeleteRecord
from whaled.image.views import (
    DiskUsage,
    HistoryItem,
    ImageDetails,
    ImageSummary,
    PruneReport,
)

ID = "sha256:" + "a" * 64
LAYER = "sha256:" + "b" * 64


def summary(**kw: Any) -> ImageSummary:
    base: dict[str, Any] = {
        "id": ID,
        "parent_id": "",
        "repo_tags": ("busybox:latest",),
        "repo_digests": (),
        "created": 1_700_000_000,
        "size": 2_000_000,
        "shared_size": -1,
        "containers": -1,
        "labels": {},
    }
    base.update(kw)
    return ImageSummary(**base)


def details(**kw: Any) -> ImageDetails:
    base: dict[str, Any] = {
        "id": ID,
        "repo_tags": ("busybox:latest",),
        "repo_digests": (),
        "parent": "",
        "comment": "Imported from -",
        "created": "2024-05-01T10:20:30.120000000Z",
        "container": "",
        "container_config": None,
        "docker_version": "",
        "author": "",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "architecture": "amd64",
        "variant": None,
        "os": "linux",
        "os_version": None,
        "size": 2_000_000,
        "graph_driver": "overlay2",
        "graph_driver_data": {"MergedDir": "/m", "UpperDir": "/u"},
        "rootfs_type": "layers",
        "rootfs_layers": (LAYER,),
        "last_tag_time": "2024-05-01T10:20:31.5Z",
        "raw_config": {},
    }
    base.update(kw)
    return ImageDetails(**base)


# ------------------------------------------------------------------ list


def test_summary_current_version() -> None:
    body = shape_summary(summary(labels={"a": "b"}), (1, 45))
    assert body == {
        "Containers": -1,
        "Created": 1_700_000_000,
        "Id": ID,
        "Labels": {"a": "b"},
        "ParentId": "",
        "RepoDigests": [],
        "RepoTags": ["busybox:latest"],
        "SharedSize": -1,
        "Size": 2_000_000,
    }


def test_summary_without_labels_is_null() -> None:
    assert shape_summary(summary(), (1, 45))["Labels"] is None


def test_summary_virtual_size_only_before_1_44() -> None:
    assert "VirtualSize" not in shape_summary(summary(), (1, 44))
    assert shape_summary(summary(), (1, 43))["VirtualSize"] == 2_000_000


def test_dangling_rows_show_none_before_1_43() -> None:
    row = summary(repo_tags=(), repo_digests=())
    old = shape_summary(row, (1, 42))
    assert old["RepoTags"] == ["<none>:<none>"]
    assert old["RepoDigests"] == ["<none>@<none>"]
    new = shape_summary(row, (1, 43))
    assert new["RepoTags"] == [] and new["RepoDigests"] == []
    digested = shape_summary(summary(repo_tags=(), repo_digests=("a@sha256:x",)), (1, 42))
    assert digested["RepoTags"] == []


def test_image_list_keeps_order() -> None:
    rows = [summary(id="sha256:1"), summary(id="sha256:2")]
    assert [r["Id"] for r in shape_image_list(rows, (1, 45))] == ["sha256:1", "sha256:2"]


# ------------------------------------------------------------------ inspect


def test_inspect_current_version() -> None:
    body = shape_inspect(details(), (1, 45))
    assert body["Id"] == ID
    assert body["Created"] == "2024-05-01T10:20:30.12Z"
    assert "Container" not in body and "ContainerConfig" not in body
    assert "VirtualSize" not in body and "Variant" not in body and "OsVersion" not in body
    assert body["GraphDriver"] == {
        "Data": {"MergedDir": "/m", "UpperDir": "/u"},
        "Name": "overlay2",
    }
    assert body["RootFS"] == {"Type": "layers", "Layers": [LAYER]}
    assert body["Metadata"] == {"LastTagTime": "2024-05-01T10:20:31.5Z"}
    cfg = body["Config"]
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == ["PATH=/bin"]
    assert cfg["Hostname"] == "" and cfg["Entrypoint"] is None and cfg["Labels"] is None
    assert "ExposedPorts" not in cfg and "Healthcheck" not in cfg
    assert json.loads(json.dumps(body)) == body


def test_inspect_older_versions() -> None:
    view = details(container="abc", container_config={"Cmd": ["x"]}, created="")
    v144 = shape_inspect(view, (1, 44))
    assert v144["Container"] == "abc" and v144["ContainerConfig"]["Cmd"] == ["x"]
    assert "VirtualSize" not in v144 and "Created" not in v144
    v143 = shape_inspect(view, (1, 43))
    assert v143["VirtualSize"] == 2_000_000
    assert v143["Created"] == GO_ZERO_TIME
    assert shape_inspect(details(), (1, 44))["ContainerConfig"]["Cmd"] is None


def test_inspect_optional_fields() -> None:
    body = shape_inspect(
        details(variant="v8", os_version="1", config=None, rootfs_layers=(), last_tag_time=None),
        (1, 45),
    )
    assert body["Variant"] == "v8" and body["OsVersion"] == "1"
    assert body["Config"] is None
    assert body["RootFS"] == {"Type": "layers"}
    assert body["Metadata"]["LastTagTime"] == GO_ZERO_TIME


@pytest.mark.parametrize(
    ("stored", "wire"),
    [
        ("2024-05-01T10:20:30Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30.000000000Z", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30.123456789Z", "2024-05-01T10:20:30.123456789Z"),
        ("2024-05-01T10:20:30.1234567891Z", "2024-05-01T10:20:30.123456789Z"),
        ("2024-05-01T10:20:30.5+02:00", "2024-05-01T10:20:30.5+02:00"),
        ("2024-05-01T10:20:30+00:00", "2024-05-01T10:20:30Z"),
        ("2024-05-01T10:20:30z", "2024-05-01T10:20:30Z"),
        ("garbage", "garbage"),
    ],
)
def test_rfc3339_nano(stored: str, wire: str) -> None:
    assert rfc3339_nano(stored) == wire


def test_container_config_keeps_unknown_keys_and_drops_empty_omitempty() -> None:
    cfg = container_config({"ExposedPorts": {}, "StopSignal": "SIGTERM", "Future": 1})
    assert cfg is not None
    assert "ExposedPorts" not in cfg
    assert cfg["StopSignal"] == "SIGTERM" and cfg["Future"] == 1
    assert container_config(None) is None


# ------------------------------------------------------------------ history, delete, prune, df


def test_history() -> None:
    items = [
        HistoryItem(id=ID, created=5, created_by="sh", tags=("a:b",), size=10, comment="c"),
        HistoryItem(id="<missing>", created=1, created_by="", tags=(), size=0, comment=""),
    ]
    assert shape_history(items) == [
        {"Comment": "c", "Created": 5, "CreatedBy": "sh", "Id": ID, "Size": 10, "Tags": ["a:b"]},
        {"Comment": "", "Created": 1, "CreatedBy": "", "Id": "<missing>", "Size": 0, "Tags": None},
    ]


def test_delete_records_and_prune() -> None:
    records = (DeleteRecord(untagged="busybox:latest"), DeleteRecord(deleted=ID))
    assert shape_delete_records(records) == [{"Untagged": "busybox:latest"}, {"Deleted": ID}]
    report = PruneReport(deleted=records, space_reclaimed=42)
    assert shape_prune(report) == {
        "ImagesDeleted": [{"Untagged": "busybox:latest"}, {"Deleted": ID}],
        "SpaceReclaimed": 42,
    }
    assert shape_prune(PruneReport(deleted=(), space_reclaimed=0)) == {
        "ImagesDeleted": None,
        "SpaceReclaimed": 0,
    }


def test_disk_usage_all_types() -> None:
    usage = DiskUsage(images=(summary(shared_size=0, containers=0),), layers_size=7)
    body = shape_disk_usage(usage, (1, 45), DF_TYPES)
    assert body["LayersSize"] == 7
    assert body["Images"][0]["Containers"] == 0 and body["Images"][0]["SharedSize"] == 0
    assert body["Containers"] == [] and body["Volumes"] == [] and body["BuildCache"] == []
    assert "BuilderSize" not in body
    assert shape_disk_usage(usage, (1, 41), DF_TYPES)["BuilderSize"] == 0
    assert "VirtualSize" in shape_disk_usage(usage, (1, 43), DF_TYPES)["Images"][0]


def test_disk_usage_selected_types() -> None:
    body = shape_disk_usage(None, (1, 45), ("volume",))
    assert body == {"Images": None, "Containers": None, "Volumes": [], "BuildCache": None}


# ------------------------------------------------------------------ JSON progress messages


def test_progress_messages() -> None:
    assert progress_json(ProgressEvent(message="Loaded image: a:b", stream=True)) == {
        "stream": "Loaded image: a:b\n"
    }
    msg = progress_json(ProgressEvent(message="Loading layer", id="abc", current=5, total=10))
    assert msg["status"] == "Loading layer" and msg["id"] == "abc"
    assert msg["progressDetail"] == {"current": 5, "total": 10}
    assert msg["progress"].startswith("[" + "=" * 25 + ">")
    assert status_message("sha256:x") == {"status": "sha256:x"}
    assert stream_message("a\n") == {"stream": "a\n"}


def test_error_message_and_encoding() -> None:
    assert error_message("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}
    assert encode_message({"status": "x"}) == b'{"status":"x"}\r\n'


def test_progress_bar() -> None:
    assert progress_bar(0, 100, width=4) == "[>   ]       0B/100B"
    assert progress_bar(100, 100, width=4) == "[====]     100B/100B"
    assert progress_bar(1_500_000, None) == "1.5MB"
    assert progress_bar(2_000_000, 4_000_000, width=2).endswith("2MB/4MB")


# ------------------------------------------------------------------ throttling


def test_progress_throttle() -> None:
    now = [0.0]
    throttle = ProgressThrottle(interval=1.0, clock=lambda: now[0])

    def ev(current: int | None, total: int | None = 100, id: str = "a") -> ProgressEvent:
        return ProgressEvent(message="Loading layer", id=id, current=current, total=total)

    assert throttle.admit(ev(1))  # first
    assert not throttle.admit(ev(2))
    assert throttle.admit(ev(3, id="b"))  # another item
    assert throttle.admit(ev(100))  # last always passes
    now[0] = 0.5
    assert not throttle.admit(ev(4))
    now[0] = 2.0
    assert throttle.admit(ev(5))
    assert throttle.admit(ev(None))  # plain status
    assert throttle.admit(ProgressEvent(message="Loaded", stream=True))


def test_a_kept_context_is_a_local_source_build_cache_record() -> None:
    from whaled.api.shape.images import shape_build_cache_record

    record = shape_build_cache_record("context-abc", 1234, 0.5, 2.0, False, 3)
    assert record["ID"] == "context-abc" and record["Type"] == "source.local"
    assert record["Size"] == 1234 and record["InUse"] is False and record["UsageCount"] == 3
    assert record["CreatedAt"] == "1970-01-01T00:00:00.500000000Z"
    assert record["LastUsedAt"] == "1970-01-01T00:00:02.000000000Z"
