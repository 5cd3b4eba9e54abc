from __future__ import annotations

import random

import pytest

from whaled.container.model import Container, ContainerState, Health
from whaled.container.names import generate_name, validate_name
from whaled.container.state import Event, Status, adopted_status, is_running, next_state
from whaled.errors import Conflict, InvalidParameter


def test_lifecycle_transitions() -> None:
    s = Status.CREATED
    s = next_state(s, Event.START)
    assert s is Status.RUNNING
    assert next_state(s, Event.PAUSE) is Status.PAUSED
    assert next_state(Status.PAUSED, Event.UNPAUSE) is Status.RUNNING
    assert next_state(Status.PAUSED, Event.EXIT) is Status.EXITED
    assert next_state(Status.EXITED, Event.START) is Status.RUNNING
    assert next_state(Status.EXITED, Event.RESTART) is Status.RESTARTING
    assert next_state(Status.EXITED, Event.REMOVE) is Status.REMOVING
    assert next_state(Status.REMOVING, Event.FAIL) is Status.DEAD
    assert next_state(Status.DEAD, Event.REMOVE) is Status.REMOVING


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (Status.CREATED, Event.PAUSE),
        (Status.EXITED, Event.UNPAUSE),
        (Status.RUNNING, Event.REMOVE),
        (Status.PAUSED, Event.START),
        (Status.REMOVING, Event.START),
    ],
)
def test_invalid_transitions_conflict(status: Status, event: Event) -> None:
    with pytest.raises(Conflict):
        next_state(status, event)


def test_running_includes_paused() -> None:
    assert is_running(Status.RUNNING) and is_running(Status.PAUSED)
    assert not is_running(Status.EXITED) and not is_running(Status.RESTARTING)


def test_names() -> None:
    assert validate_name("/web_1") == "web_1"
    assert validate_name("a.b-c") == "a.b-c"
    for bad in ("", "a", "-x", "x y", "/", "é1"):
        with pytest.raises(InvalidParameter, match="Invalid container name"):
            validate_name(bad)
    rng = random.Random(1)
    name = generate_name(rng)
    assert validate_name(name) == name and "_" in name
    assert generate_name(random.Random(1), retry=1)[-1].isdigit()


def test_record_round_trips_through_json() -> None:
    c = Container(
        id="a" * 64,
        name="x",
        created="2026-01-01T00:00:00.000000000Z",
        image_id="sha256:" + "b" * 64,
        image_ref="busybox",
        path="sh",
        args=["-c", "true"],
        config={"Image": "busybox"},
        host_config={"NetworkMode": "none"},
        state=ContainerState(status=Status.EXITED, exit_code=3, health=Health(status="healthy")),
    )
    again = Container.from_json(c.to_json())
    assert again == c
    assert again.state.status is Status.EXITED


@pytest.mark.parametrize(
    ("recorded", "for_commit", "runtime_paused", "expected"),
    [
        # A pause the user asked for survives a daemon restart.
        (Status.PAUSED, False, True, (Status.PAUSED, False)),
        # A commit's pause does not (the daemon died mid-commit).
        (Status.PAUSED, True, True, (Status.RUNNING, True)),
        # A pause cut between the runtime call and its record: undone.
        (Status.RUNNING, False, True, (Status.RUNNING, True)),
        # An unpause cut between the runtime call and its record: the runtime wins.
        (Status.PAUSED, False, False, (Status.RUNNING, False)),
        (Status.RUNNING, False, False, (Status.RUNNING, False)),
        (Status.RESTARTING, False, False, (Status.RUNNING, False)),
    ],
)
def test_adopted_status(
    recorded: Status, for_commit: bool, runtime_paused: bool, expected: tuple[Status, bool]
) -> None:
    assert (
        adopted_status(recorded, paused_for_commit=for_commit, runtime_paused=runtime_paused)
        == expected
    )


def test_paused_for_commit_round_trips_and_defaults_off() -> None:
    c = Container(
        id="a" * 64, name="x", created="", image_id="", image_ref="", path="sh", args=[],
        config={}, host_config={}, paused_for_commit=True,
    )  # fmt: skip
    assert Container.from_json(c.to_json()).paused_for_commit
    old = c.to_json()
    del old["paused_for_commit"]
    assert not Container.from_json(old).paused_for_commit
