"""Wire shapes of container inspect and list (pure), by API version."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from whaled.api.versions import ApiVersion
from whaled.container.model import Container
from whaled.container.state import Status, is_running
from whaled.daemon.networks import Attachment


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerView:
    """A container plus what inspect/list show beside the record."""

    container: Container
    graph_driver: Mapping[str, str] = field(default_factory=dict)
    exec_ids: Sequence[str] = ()
    size_rw: int | None = None
    size_root_fs: int | None = None
    networks: Sequence[Attachment] = ()
    ports: Mapping[str, Any] | None = None


class HasView(Protocol):
    """What the container service hands out for list/inspect (same fields as the view)."""

    @property
    def container(self) -> Container: ...
    @property
    def graph_driver(self) -> Mapping[str, str]: ...
    @property
    def exec_ids(self) -> Sequence[str]: ...
    @property
    def size_rw(self) -> int | None: ...
    @property
    def size_root_fs(self) -> int | None: ...
    @property
    def networks(self) -> Sequence[Attachment]: ...
    @property
    def ports(self) -> Mapping[str, Any] | None: ...


def view_of(summary: HasView) -> ContainerView:
    return ContainerView(
        container=summary.container,
        graph_driver=summary.graph_driver,
        exec_ids=summary.exec_ids,
        size_rw=summary.size_rw,
        size_root_fs=summary.size_root_fs,
        networks=summary.networks,
        ports=summary.ports,
    )


def parse_time(text: str) -> float:
    """RFC 3339 (with nanoseconds) → Unix seconds; the zero time → 0."""
    if not text or text.startswith("0001-"):
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(main + "+00:00").timestamp()
    return seconds + (float("0." + frac) if frac else 0.0)


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def status_text(c: Container, now: float) -> str:
    st = c.state
    if st.status in (Status.RUNNING, Status.PAUSED):
        text = f"Up {human_duration(now - parse_time(st.started_at))}"
        if st.status is Status.PAUSED:
            text += " (Paused)"
        elif st.health is not None:
            text += (
                f" (health: {st.health.status})"
                if st.health.status == "starting"
                else (f" ({st.health.status})")
            )
        return text
    if st.status is Status.RESTARTING:
        return f"Restarting ({st.exit_code}) {human_duration(now - parse_time(st.finished_at))} ago"
    if st.status is Status.REMOVING:
        return "Removal In Progress"
    if st.status is Status.DEAD:
        return "Dead"
    if st.status is Status.EXITED and parse_time(st.finished_at):
        return f"Exited ({st.exit_code}) {human_duration(now - parse_time(st.finished_at))} ago"
    return "Created"


def state_json(c: Container) -> dict[str, Any]:
    st = c.state
    body: dict[str, Any] = {
        "Status": st.status.value,
        "Running": is_running(st.status),
        "Paused": st.status is Status.PAUSED,
        "Restarting": st.status is Status.RESTARTING,
        "OOMKilled": st.oom_killed,
        "Dead": st.status is Status.DEAD,
        "Pid": st.pid,
        "ExitCode": st.exit_code,
        "Error": st.error,
        "StartedAt": st.started_at,
        "FinishedAt": st.finished_at,
    }
    if st.health is not None:
        body["Health"] = {
            "Status": st.health.status,
            "FailingStreak": st.health.failing_streak,
            "Log": list(st.health.log),
        }
    return body


def mounts_json(c: Container) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    hc = c.host_config
    for bind in hc.get("Binds") or []:
        if not str(bind).startswith("/"):
            continue  # a named volume: among the mount points below
        parts = str(bind).split(":")
        opts = parts[2] if len(parts) > 2 else ""
        out.append(
            {
                "Type": "bind",
                "Source": parts[0],
                "Destination": parts[1],
                "Mode": opts,
                "RW": "ro" not in opts.split(","),
                "Propagation": "rprivate",
            }
        )
    for m in hc.get("Mounts") or []:
        if m.get("Type") == "volume":
            continue
        out.append(
            {
                "Type": m.get("Type"),
                "Source": m.get("Source", ""),
                "Destination": m.get("Target"),
                "Mode": "",
                "RW": not m.get("ReadOnly", False),
                "Propagation": "rprivate",
            }
        )
    for p in c.mount_points:
        out.append(
            {
                "Type": "volume",
                "Name": p.get("name", ""),
                "Source": p.get("source", ""),
                "Destination": p.get("destination", ""),
                "Driver": p.get("driver", "local"),
                "Mode": p.get("mode", ""),
                "RW": bool(p.get("rw", True)),
                "Propagation": "",
            }
        )
    return out


def _list_ports(ports: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """``docker ps`` PORTS: each published binding (and each exposed port alone)."""
    out: list[dict[str, Any]] = []
    for key, bindings in (ports or {}).items():
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto})
            continue
        for b in bindings:
            out.append(
                {
                    "IP": b["HostIp"],
                    "PrivatePort": int(port),
                    "PublicPort": int(b["HostPort"]),
                    "Type": proto,
                }
            )
    return out


def _endpoint_json(a: Attachment, c: Container) -> dict[str, Any]:
    ep, n = a.endpoint, a.network
    return {
        "IPAMConfig": {"IPv4Address": ep.ip} if ep.static else None,
        "Links": list(ep.links) or None,
        "Aliases": list(ep.aliases) or None,
        "MacAddress": ep.mac,
        "NetworkID": n.id,
        "EndpointID": ep.endpoint_id,
        "Gateway": n.gateway,
        "IPAddress": ep.ip,
        "IPPrefixLen": n.prefixlen,
        "IPv6Gateway": n.gateway6 if ep.ip6 else "",
        "GlobalIPv6Address": ep.ip6,
        "GlobalIPv6PrefixLen": n.prefixlen6 if ep.ip6 else 0,
        "DriverOpts": None,
        "DNSNames": [c.name, *ep.aliases, c.id[:12]],
    }


def _network_settings(
    c: Container, attached: Sequence[Attachment] = (), ports: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    mode = str(c.host_config.get("NetworkMode") or "default")
    networks: dict[str, Any] = {}
    if mode in ("none", "host"):
        networks[mode] = {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": None,
            "MacAddress": "",
            "NetworkID": "",
            "EndpointID": "",
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DriverOpts": None,
            "DNSNames": None,
        }
    top = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""}
    for a in attached:
        networks[a.network.name] = _endpoint_json(a, c)
        if a.network.name == "bridge":  # the default bridge's endpoint, also at the top
            top = {
                "EndpointID": a.endpoint.endpoint_id,
                "Gateway": a.network.gateway,
                "IPAddress": a.endpoint.ip,
                "IPPrefixLen": a.network.prefixlen,
                "MacAddress": a.endpoint.mac,
            }
    return {
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": dict(ports or {}),
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": top["EndpointID"],
        "Gateway": top["Gateway"],
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": top["IPAddress"],
        "IPPrefixLen": top["IPPrefixLen"],
        "IPv6Gateway": "",
        "MacAddress": top["MacAddress"],
        "Networks": networks,
    }


def shape_inspect(view: ContainerView, api: ApiVersion) -> dict[str, Any]:
    c = view.container
    body: dict[str, Any] = {
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": list(c.args),
        "State": state_json(c),
        "Image": c.image_id,
        "ResolvConfPath": c.resolv_conf_path,
        "HostnamePath": c.hostname_path,
        "HostsPath": c.hosts_path,
        "LogPath": c.log_path,
        "Name": "/" + c.name,
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": c.platform,
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": list(view.exec_ids) or None,
        "HostConfig": dict(c.host_config),
        "GraphDriver": {"Data": dict(view.graph_driver) or None, "Name": "overlay2"},
        "Mounts": mounts_json(c),
        "Config": dict(c.config),
        "NetworkSettings": _network_settings(c, view.networks, view.ports),
        # whaled's own field: the runtime executable this container is locked to (set at
        # each start; every later runtime call of the container uses exactly this path).
        "WhaledRuntimePath": c.runtime_path,
    }
    if view.size_rw is not None:
        body["SizeRw"] = view.size_rw
        body["SizeRootFs"] = view.size_root_fs or 0
    if api < (1, 44):
        body["Config"].setdefault("MacAddress", "")
    return body


def command_text(c: Container) -> str:
    argv = [c.path, *c.args] if c.path else []
    return " ".join(shlex.quote(a) if " " in a else a for a in argv)


def shape_list_item(view: ContainerView, now: float) -> dict[str, Any]:
    c = view.container
    body: dict[str, Any] = {
        "Id": c.id,
        "Names": ["/" + c.name],
        "Image": c.image_ref,
        "ImageID": c.image_id,
        "Command": command_text(c),
        "Created": int(parse_time(c.created)),
        "Ports": _list_ports(view.ports),
        "Labels": dict(c.config.get("Labels") or {}),
        "State": c.state.status.value,
        "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": c.host_config.get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": _network_settings(c, view.networks)["Networks"]},
        "Mounts": mounts_json(c),
    }
    if view.size_rw is not None:
        body["SizeRw"] = view.size_rw
        body["SizeRootFs"] = view.size_root_fs or 0
    return body
