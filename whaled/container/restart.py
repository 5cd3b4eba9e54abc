"""Restart policies: validation, the restart decision and dockerd's back-off (pure).

The rules are dockerd's, checked against moby's ``restartmanager/restartmanager.go``,
``api/types/container/hostconfig.go`` (``ValidateRestartPolicy``, moby 25+),
``container/container.go`` (``ExitOnNext``) and the Docker docs on restart policies:

Decision (:func:`should_restart`), evaluated when the container's process exits:

- ``no`` (or an empty name, which old clients send) never restarts.
- ``always`` restarts whatever the exit code; ``unless-stopped`` likewise.
- ``on-failure[:N]`` restarts only on a non-zero exit code, and with ``N > 0`` only while the
  number of restarts so far is below ``N`` (``N == 0`` means no limit).
- A stop or kill by the user cancels the container's restart manager (``ExitOnNext``), so a
  manually stopped container is not restarted, whatever the policy.
- The daemon shutting down stops every container without restarting any.
- At daemon start (``at_daemon_start=True``) dockerd asks the same question of every
  container with the exit code it recorded, passing "manually stopped" through, and only
  ``unless-stopped`` honours it: an ``always`` container stopped by the user is started again
  when the daemon starts (the documented difference between the two policies), and so is an
  ``on-failure`` one whose recorded exit code is non-zero and whose retries are not used up.

Back-off (:class:`Backoff`), one per container, reset by a manual start/restart:

- Each restart waits: the first 100 ms, each next one twice the previous, at most 1 minute
  (100 ms, 200 ms, 400 ms … 51.2 s, 60 s, 60 s …).
- If the container ran for 10 s or more before it exited, the wait goes back to 100 ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whaled.errors import InvalidParameter

POLICY_NAMES = ("no", "always", "unless-stopped", "on-failure")

INITIAL_DELAY_MS = 100
MAX_DELAY_MS = 60_000
BACKOFF_MULTIPLIER = 2
RESET_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """HostConfig.RestartPolicy. ``name`` is kept as given ("" is accepted like dockerd does:
    older daemons stored it as the default and it means ``no``)."""

    name: str = "no"
    maximum_retry_count: int = 0

    @staticmethod
    def from_api(body: Mapping[str, Any] | None) -> RestartPolicy:
        """From the API object ``{"Name": ..., "MaximumRetryCount": ...}`` (types checked;
        call :meth:`validate` for dockerd's value rules)."""
        body = body or {}
        name = body.get("Name")
        if name is None:
            name = ""
        if not isinstance(name, str):
            raise InvalidParameter("invalid restart policy: Name must be a string")
        count = body.get("MaximumRetryCount")
        if count is None:
            count = 0
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidParameter("invalid restart policy: MaximumRetryCount must be an integer")
        return RestartPolicy(name=name, maximum_retry_count=count)

    @property
    def is_none(self) -> bool:
        return self.name in ("", "no")

    def validate(self) -> None:
        """dockerd's ``ValidateRestartPolicy`` (moby 25+ wording), as InvalidParameter."""
        count = self.maximum_retry_count
        if self.name in ("always", "unless-stopped", "no"):
            if count != 0:
                message = (
                    "invalid restart policy: maximum retry count can only be used with 'on-failure'"
                )
                if count < 0:
                    message += " and cannot be negative"
                raise InvalidParameter(message)
        elif self.name == "on-failure":
            if count < 0:
                raise InvalidParameter(
                    "invalid restart policy: maximum retry count cannot be negative"
                )
        elif self.name != "":
            raise InvalidParameter(
                f"invalid restart policy: unknown policy '{self.name}'; use one of 'no', "
                "'always', 'on-failure', or 'unless-stopped'"
            )

    def to_api(self) -> dict[str, Any]:
        return {"Name": self.name, "MaximumRetryCount": self.maximum_retry_count}


def should_restart(
    policy: RestartPolicy,
    *,
    exit_code: int,
    manually_stopped: bool,
    restart_count: int,
    daemon_shutting_down: bool,
    at_daemon_start: bool = False,
) -> bool:
    """Whether to restart a container whose process just exited (see the module docstring).

    ``restart_count`` is the number of restarts so far (the container's RestartCount before
    this one is counted).
    """
    if policy.is_none or daemon_shutting_down:
        return False
    if manually_stopped and not at_daemon_start:
        return False
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return exit_code != 0 and (limit <= 0 or restart_count < limit)
    return False


class Backoff:
    """dockerd's restart delay for one container (mutable; not thread-safe)."""

    __slots__ = ("_delay_ms",)

    def __init__(self) -> None:
        self._delay_ms = 0

    def next_delay(self, ran_for_seconds: float) -> float:
        """Seconds to wait before the next restart of a container that ran for
        ``ran_for_seconds`` before it exited."""
        if ran_for_seconds >= RESET_AFTER_SECONDS:
            self._delay_ms = 0
        if self._delay_ms == 0:
            self._delay_ms = INITIAL_DELAY_MS
        elif self._delay_ms < MAX_DELAY_MS:
            self._delay_ms *= BACKOFF_MULTIPLIER
        self._delay_ms = min(self._delay_ms, MAX_DELAY_MS)
        return self._delay_ms / 1000

    def reset(self) -> None:
        """Back to the first delay (a manual start or restart does this)."""
        self._delay_ms = 0
