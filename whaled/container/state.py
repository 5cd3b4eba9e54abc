"""The container state machine as one transition table (pure).

Docker's inspect booleans (Running, Paused, Restarting, OOMKilled, Dead) are derived from
``Status``; nothing stores them separately.
"""

from __future__ import annotations

import enum

from whaled.errors import Conflict


class Status(enum.StrEnum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


class Event(enum.StrEnum):
    START = "start"  # the init process is running
    EXIT = "exit"  # the init process ended
    PAUSE = "pause"
    UNPAUSE = "unpause"
    RESTART = "restart"  # a restart policy scheduled a new start
    REMOVE = "remove"  # removal began
    FAIL = "fail"  # removal failed half-way: the container is dead


S, E = Status, Event

TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (S.CREATED, E.START): S.RUNNING,
    (S.EXITED, E.START): S.RUNNING,
    (S.RESTARTING, E.START): S.RUNNING,
    (S.RUNNING, E.EXIT): S.EXITED,
    (S.PAUSED, E.EXIT): S.EXITED,
    (S.RESTARTING, E.EXIT): S.EXITED,
    (S.RUNNING, E.PAUSE): S.PAUSED,
    (S.PAUSED, E.UNPAUSE): S.RUNNING,
    (S.RUNNING, E.RESTART): S.RESTARTING,
    (S.EXITED, E.RESTART): S.RESTARTING,
    (S.CREATED, E.REMOVE): S.REMOVING,
    (S.EXITED, E.REMOVE): S.REMOVING,
    (S.DEAD, E.REMOVE): S.REMOVING,
    (S.RESTARTING, E.REMOVE): S.REMOVING,
    (S.REMOVING, E.FAIL): S.DEAD,
    (S.CREATED, E.FAIL): S.DEAD,
    (S.EXITED, E.FAIL): S.DEAD,
}


def next_state(current: Status, event: Event) -> Status:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise Conflict(f"cannot {event.value} a container that is {current.value}") from None


def is_running(status: Status) -> bool:
    """Docker's State.Running: true while paused or restarting too."""
    return status in (S.RUNNING, S.PAUSED)


def adopted_status(
    recorded: Status, *, paused_for_commit: bool, runtime_paused: bool
) -> tuple[Status, bool]:
    """A live container re-adopted at daemon start: (its status, whether to resume it).

    The runtime's view wins over a record a crash may have left behind: a pause or an
    unpause cut between the runtime call and the record. A pause that only a commit made
    (``Container.paused_for_commit``) ends with the commit, so it does not outlive a crash
    either: the container is resumed. A pause the user asked for stays."""
    if runtime_paused:
        if recorded == Status.PAUSED and not paused_for_commit:
            return Status.PAUSED, False
        return Status.RUNNING, True
    return Status.RUNNING, False
