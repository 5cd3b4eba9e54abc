"""Whether a container can be removed without ``force`` (pure; dockerd's 409s)."""

from __future__ import annotations

from whaled.container.model import Container
from whaled.container.state import Status, is_running
from whaled.errors import Conflict


def check_removable(c: Container) -> None:
    """A paused, restarting or running container needs ``force`` (``docker rm -f``)."""
    if c.state.status == Status.PAUSED:
        raise Conflict(
            f"You cannot remove a paused container {c.id}. Unpause and then stop the "
            "container before attempting removal or force remove"
        )
    if c.state.status == Status.RESTARTING:
        raise Conflict(
            f'cannot remove container "/{c.name}": container is restarting: stop the '
            "container before removing or force remove"
        )
    if is_running(c.state.status):
        raise Conflict(
            f"You cannot remove a running container {c.id}. Stop the container "
            "before attempting removal or force remove"
        )
