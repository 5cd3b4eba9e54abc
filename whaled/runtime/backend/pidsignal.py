"""Signalling a monitored process by pid without hitting a recycled one."""

from __future__ import annotations

import os
import signal as signals
from collections.abc import Callable

from whaled.errors import Conflict


def signal_process(pid: int, signal: int, *, exited: Callable[[], bool], what: str) -> None:
    """Send ``signal`` to ``pid`` through a pidfd; ``exited`` is checked after the pidfd is
    open (a recycled pid would belong to a process whose exit is already known).
    ``Conflict`` naming ``what`` when the process is not running."""
    gone = Conflict(f"process {what} is not running")
    if exited():
        raise gone
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise gone from None
    try:
        if exited():
            raise gone
        signals.pidfd_send_signal(pidfd, signal)
    except ProcessLookupError:
        raise gone from None
    finally:
        os.close(pidfd)
