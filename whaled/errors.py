"""Domain errors, defined once.

Every layer raises these; only ``whaled.api.errors`` turns them into HTTP status codes
(the one place that knows the transport). Specific subclasses carry dockerd's wording so
clients that match on messages keep working.
"""

from __future__ import annotations

import json


class WhaledError(Exception):
    """Base of every error whaled reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidParameter(WhaledError):
    """Bad input from the client (HTTP 400)."""


class Unauthorized(WhaledError):
    """Missing or wrong credentials (HTTP 401)."""


class Forbidden(WhaledError):
    """The request is understood but refused (HTTP 403)."""


class NotFound(WhaledError):
    """The named object does not exist (HTTP 404)."""


class Conflict(WhaledError):
    """The request conflicts with the current state (HTTP 409)."""


class NotModified(WhaledError):
    """Nothing to do: the object is already in the requested state (HTTP 304)."""


class Unsupported(WhaledError):
    """whaled does not implement this (HTTP 501)."""


class Unavailable(WhaledError):
    """A service needed for the request is not available right now (HTTP 503)."""


class SystemFailure(WhaledError):
    """Something failed inside the daemon or the host (HTTP 500)."""


class ConfigError(InvalidParameter):
    """The daemon configuration (flags + daemon.json) is invalid."""


class NoSuchContainer(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such container: {ref}")


class NoSuchImage(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No such image: {ref}")


class NotSwarmManager(Unavailable):
    """dockerd's answer on a node outside any swarm to a request only a manager serves."""

    def __init__(self) -> None:
        super().__init__(
            'This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
            "to connect this node to swarm and try again."
        )


class NotInSwarm(Unavailable):
    """dockerd's answer to ``swarm leave`` on a node outside any swarm."""

    def __init__(self) -> None:
        super().__init__("This node is not part of a swarm")


class NoSuchPlugin(NotFound):
    def __init__(self, name: str) -> None:
        # Go's %q: a double-quoted, escaped string.
        super().__init__(f"plugin {json.dumps(name, ensure_ascii=False)} not found")
