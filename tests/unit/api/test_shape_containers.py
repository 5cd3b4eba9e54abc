from __future__ import annotations

import pytest

from whaled.api.shape.containers import (
    ContainerView,
    human_duration,
    parse_time,
    shape_inspect,
    shape_list_item,
    status_text,
)
from whaled.container.model import Container, ContainerState, Health
from whaled.container.state import Status

T0 = "2026-11-24T12:00:00.500000000Z"


def make(status: Status = Status.CREATED, **state: object) -> Container:
    return Container(
        id="a" * 64,
        name="web",
        created=T0,
        image_id="sha256:" + "b" * 64,
        image_ref="busybox",
        path="sh",
        args=["-c", "echo hi"],
        config={"Labels": {"k": "v"}},
        host_config={"NetworkMode": "none", "Binds": ["/h:/c:ro"]},
        state=ContainerState(status=status, **state),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (42, "42 seconds"),
        (61, "About a minute"),
        (600, "10 minutes"),
        (3600, "About an hour"),
        (7200, "2 hours"),
        (3 * 86400, "3 days"),
        (20 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_status_texts() -> None:
    now = parse_time(T0) + 5
    assert status_text(make(), now) == "Created"
    assert status_text(make(Status.RUNNING, started_at=T0), now) == "Up 5 seconds"
    assert status_text(make(Status.PAUSED, started_at=T0), now) == "Up 5 seconds (Paused)"
    healthy = make(Status.RUNNING, started_at=T0, health=Health(status="healthy"))
    assert status_text(healthy, now) == "Up 5 seconds (healthy)"
    exited = make(Status.EXITED, exit_code=3, finished_at=T0)
    assert status_text(exited, now) == "Exited (3) 5 seconds ago"
    assert status_text(make(Status.DEAD), now) == "Dead"


def test_inspect_shape() -> None:
    body = shape_inspect(ContainerView(container=make(Status.EXITED, exit_code=1)), (1, 45))
    assert body["Name"] == "/web" and body["State"]["Status"] == "exited"
    assert body["State"]["Running"] is False and body["State"]["ExitCode"] == 1
    assert body["Mounts"][0]["RW"] is False
    assert "none" in body["NetworkSettings"]["Networks"]
    assert body["GraphDriver"] == {"Data": None, "Name": "overlay2"}
    assert "Health" not in body["State"]


def test_list_item_shape() -> None:
    item = shape_list_item(
        ContainerView(container=make(Status.RUNNING, started_at=T0)), parse_time(T0) + 70
    )
    assert item["Names"] == ["/web"] and item["State"] == "running"
    assert item["Status"] == "Up About a minute"
    assert item["Command"] == "sh -c 'echo hi'"
    assert item["Created"] == 1795521600
