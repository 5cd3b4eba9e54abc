from __future__ import annotations

import pytest

from whaled.container.listing import count_by_state, image_users
from whaled.container.model import Container
from whaled.container.remove import check_removable
from whaled.container.start import classify_start_failure
from whaled.container.state import Status
from whaled.errors import Conflict
from whaled.image.store import ImageUser


def record(cid: str, status: Status, image_id: str = "sha256:i") -> Container:
    c = Container(
        id=cid, name=cid, created="", image_id=image_id, image_ref="busybox", path="sh",
        args=[], config={}, host_config={},
    )
    c.state.status = status
    return c


@pytest.mark.parametrize(
    ("message", "code", "mistake"),
    [
        ('exec: "nope": executable file not found in $PATH', 127, True),
        ("open /x: No such file or directory", 127, True),
        ("exec /etc/passwd: permission denied", 126, True),
        ("runc create failed: cgroup error", 128, False),
    ],
)
def test_start_failures(message: str, code: int, mistake: bool) -> None:
    failure = classify_start_failure(message)
    assert (failure.exit_code, failure.callers_mistake) == (code, mistake)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Status.PAUSED, "You cannot remove a paused container"),
        (Status.RESTARTING, "container is restarting"),
        (Status.RUNNING, "You cannot remove a running container"),
    ],
)
def test_live_containers_need_force(status: Status, message: str) -> None:
    with pytest.raises(Conflict, match=message):
        check_removable(record("a", status))


@pytest.mark.parametrize("status", [Status.CREATED, Status.EXITED, Status.DEAD])
def test_stopped_containers_are_removable(status: Status) -> None:
    check_removable(record("a", status))


def test_counts_and_image_users() -> None:
    cs = [
        record("a", Status.RUNNING),
        record("b", Status.PAUSED, "sha256:j"),
        record("c", Status.EXITED),
        record("d", Status.RESTARTING),
    ]
    assert count_by_state(cs) == (4, 1, 1, 2)
    assert image_users(cs, "sha256:i") == [
        ImageUser(container_id="a", running=True),
        ImageUser(container_id="c", running=False),
        ImageUser(container_id="d", running=False),
    ]
