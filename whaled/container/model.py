"""The container record.

``config`` and ``host_config`` are the Docker API's Config and HostConfig objects as
accepted (validated and normalised) at create time; they are what inspect shows. Mutable
fields: ``name`` (rename), ``host_config`` (update: resources, restart policy), ``state``,
``restart_count``, ``runtime_path`` (locked in at each start), ``manually_stopped``.
Everything else is fixed at create.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from whaled.container.state import Status

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(slots=True, kw_only=True)
class Health:
    status: str = "starting"  # starting, healthy, unhealthy
    failing_streak: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ContainerState:
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    health: Health | None = None


@dataclass(slots=True, kw_only=True)
class Container:
    id: str
    name: str  # without the leading "/"
    created: str  # RFC 3339 with nanoseconds
    image_id: str
    image_ref: str  # Config.Image as the client gave it
    path: str  # argv[0] after the entrypoint/cmd merge
    args: list[str]
    config: dict[str, Any]
    host_config: dict[str, Any]
    state: ContainerState = field(default_factory=ContainerState)
    restart_count: int = 0
    runtime: str = "runc"  # HostConfig.Runtime resolved at create
    runtime_path: str = ""  # the executable locked in at the last start
    manually_stopped: bool = False
    #: paused by a commit (``docker commit --pause``), not by the user: see
    #: ``container.state.adopted_status``
    paused_for_commit: bool = False
    log_path: str = ""
    hostname_path: str = ""
    hosts_path: str = ""
    resolv_conf_path: str = ""
    platform: str = "linux"
    #: the volumes mounted into the container (``whaled.volume.model.MountPoint`` records)
    mount_points: list[dict[str, Any]] = field(default_factory=list)
    #: dockerd's legacy link variables (``--link`` on the default bridge), set at create
    link_env: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["state"]["status"] = self.state.status.value
        return body

    @staticmethod
    def from_json(body: dict[str, Any]) -> Container:
        state_body = dict(body.get("state") or {})
        health_body = state_body.pop("health", None)
        state = ContainerState(
            **{**state_body, "status": Status(state_body.get("status", "created"))},
            health=Health(**health_body) if health_body else None,
        )
        fields = {k: v for k, v in body.items() if k != "state"}
        return Container(**fields, state=state)
