"""Container events: the public emitter every service announces container events through.

Attributes are dockerd's: ``image`` (as the client gave it), ``name``, the container's labels,
then the action's own (``exitCode``, ``signal``, ``execID``…). A state change is persisted
before its event is emitted (the caller's duty).
"""

from __future__ import annotations

from collections.abc import Mapping

from whaled.container.model import Container
from whaled.events import EventBus

CONTAINER_EVENT = "container"


def event_attributes(c: Container, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The attributes of an event about ``c`` (pure)."""
    attributes = {"image": c.image_ref, "name": c.name}
    for key, value in (c.config.get("Labels") or {}).items():
        attributes[key] = str(value)
    if extra:
        attributes.update(extra)
    return attributes


class ContainerEvents:
    """Emits ``container`` events on the daemon's bus (never blocks)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def emit(self, c: Container, action: str, extra: Mapping[str, str] | None = None) -> None:
        self._bus.emit(CONTAINER_EVENT, action, c.id, event_attributes(c, extra))

    def emit_pruned(self, reclaimed: int) -> None:
        """``docker container prune`` finished (dockerd's event has no container ID)."""
        self._bus.emit(CONTAINER_EVENT, "prune", "", {"reclaimed": str(reclaimed)})
