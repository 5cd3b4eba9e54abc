"""What a container's exit leads to (pure): the exit comes in, an :class:`ExitPlan` goes out.

:func:`plan_exit` decides, from the record and the facts of the moment, everything that
follows the end of a container's init process: its status after the exit (``exited``, or
``restarting`` when the restart policy wants it back), whether it is removed (``--rm``),
whether the record is written again and which events are announced. The daemon's exit
handler (``ContainerService._handle_exit``) only carries the plan out: it applies it to the
record (:func:`apply_exit`), persists, emits the events in order, wakes the waiters, cleans
up, then removes or schedules the restart.

The rules (dockerd's):

- A running or paused container becomes ``exited``; ``pid`` is 0 and the exit code, the OOM
  flag and the finish time are recorded; a healthcheck status becomes ``unhealthy``.
- The restart policy decides a restart (:func:`whaled.container.restart.should_restart`);
  never while the container is being removed (or already is) or the daemon shuts down, nor
  after a stop or kill by the user.
- ``--rm`` (``AutoRemove``) removes the container when it is not restarted and no removal is
  already under way.
- The record is written again unless it is gone or about to be removed (after a crash the
  daemon finds the exit and removes the container then).
- Events: ``oom`` (only when the kernel killed it for memory), then ``die`` with
  ``exitCode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from whaled.container.health import mark_stopped
from whaled.container.model import Container
from whaled.container.restart import RestartPolicy, should_restart
from whaled.container.state import Event, Status, next_state


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitEvent:
    """One container event to announce: its action and extra attributes."""

    action: str
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitPlan:
    status: Status  # the status after the exit: exited, or restarting
    exit_code: int
    oom_killed: bool
    finished_at: str
    restart: bool  # start it again after the back-off delay
    auto_remove: bool  # remove it (--rm) once its root file system is released
    save: bool  # write the record again
    events: tuple[ExitEvent, ...]


def plan_exit(
    c: Container,
    *,
    exit_code: int,
    oom_killed: bool,
    finished_at: str,
    removing: bool,
    record_exists: bool,
    daemon_shutting_down: bool,
) -> ExitPlan:
    """The plan for the exit of ``c``'s process (``c`` is read, not changed).

    ``removing``: a removal of the container is under way or done; ``record_exists``: its
    record is still in the store."""
    status = c.state.status
    if status in (Status.RUNNING, Status.PAUSED):
        status = next_state(status, Event.EXIT)
    restart = not removing and should_restart(
        RestartPolicy.from_api(c.host_config.get("RestartPolicy") or {}),
        exit_code=exit_code,
        manually_stopped=c.manually_stopped,
        restart_count=c.restart_count,
        daemon_shutting_down=daemon_shutting_down,
    )
    if restart:
        status = next_state(status, Event.RESTART)
    auto_remove = not restart and bool(c.host_config.get("AutoRemove")) and not removing
    events: list[ExitEvent] = []
    if oom_killed:
        events.append(ExitEvent(action="oom", attributes={}))
    events.append(ExitEvent(action="die", attributes={"exitCode": str(exit_code)}))
    return ExitPlan(
        status=status,
        exit_code=exit_code,
        oom_killed=oom_killed,
        finished_at=finished_at,
        restart=restart,
        auto_remove=auto_remove,
        save=record_exists and not auto_remove,
        events=tuple(events),
    )


def apply_exit(c: Container, plan: ExitPlan) -> None:
    """Record the exit in the container's state, as planned."""
    c.state.status = plan.status
    c.state.pid = 0
    c.state.exit_code = plan.exit_code
    c.state.oom_killed = plan.oom_killed
    c.state.finished_at = plan.finished_at
    if c.state.health is not None:
        mark_stopped(c.state.health)
