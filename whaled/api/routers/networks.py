"""Network routes: create, list, inspect, connect, disconnect, remove, prune
(``docker network``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response
from whaled.api.filters import parse_filters
from whaled.api.params import bool_param, json_body
from whaled.api.schema.networks import CONNECT, CREATE, DISCONNECT
from whaled.container.state import is_running
from whaled.daemon.networks import NetworkService
from whaled.errors import InvalidParameter
from whaled.network.model import Network


def _networks(request: web.Request) -> NetworkService:
    return request.app[DAEMON_KEY].networks


def _filters(request: web.Request) -> dict[str, tuple[str, ...]]:
    filters = parse_filters(request.query.get("filters"))
    return {key: filters.get(key) for key in filters}


def shape_network(n: Network, svc: NetworkService, *, containers: bool) -> dict[str, Any]:
    config: list[dict[str, Any]] = []
    if n.subnet:
        entry: dict[str, Any] = {"Subnet": n.subnet, "Gateway": n.gateway}
        if n.ip_range:
            entry["IPRange"] = n.ip_range
        if n.aux:
            entry["AuxiliaryAddresses"] = dict(n.aux)
        config.append(entry)
    if n.subnet6:
        config.append({"Subnet": n.subnet6, "Gateway": n.gateway6})
    body: dict[str, Any] = {
        "Name": n.name,
        "Id": n.id,
        "Created": n.created or "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": True,
        "EnableIPv6": bool(n.subnet6),
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {},
        "Options": dict(n.options),
        "Labels": dict(n.labels),
    }
    if containers:
        body["Containers"] = {
            cid: {
                "Name": svc.container_name(cid),
                "EndpointID": ep.endpoint_id,
                "MacAddress": ep.mac,
                "IPv4Address": f"{ep.ip}/{n.prefixlen}",
                "IPv6Address": f"{ep.ip6}/{n.prefixlen6}" if ep.ip6 else "",
            }
            for cid, ep in n.endpoints.items()
        }
    return body


async def post_networks_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, CREATE)
    ipam = body.get("IPAM") or {}
    if ipam.get("Driver") not in (None, "", "default"):
        raise InvalidParameter(f'IPAM driver "{ipam["Driver"]}" is not supported')
    n = await _networks(request).create(
        str(body.get("Name") or ""),
        driver=str(body.get("Driver") or ""),
        internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")),
        labels=body.get("Labels") or {},
        options=body.get("Options") or {},
        ipam_configs=ipam.get("Config") or [],
        enable_ipv6=bool(body.get("EnableIPv6")),
    )
    return json_response({"Id": n.id, "Warning": ""}, status=201)


async def get_networks(request: web.Request) -> web.StreamResponse:
    svc = _networks(request)
    found = svc.find_all(_filters(request))
    return json_response([shape_network(n, svc, containers=False) for n in found])


async def get_network(request: web.Request) -> web.StreamResponse:
    svc = _networks(request)
    if bool_param(request, "verbose"):
        raise InvalidParameter("verbose network inspect is only for swarm networks")
    n = svc.find(request.match_info["id"])
    return json_response(shape_network(n, svc, containers=True))


async def delete_network(request: web.Request) -> web.StreamResponse:
    await _networks(request).remove(request.match_info["id"])
    return web.Response(status=204)


async def post_networks_prune(request: web.Request) -> web.StreamResponse:
    removed = await _networks(request).prune(_filters(request))
    return json_response({"NetworksDeleted": removed or None})


async def post_network_connect(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, CONNECT)
    c = request.app[DAEMON_KEY].containers.get(str(body.get("Container") or ""))
    await _networks(request).connect(
        request.match_info["id"],
        c.id,
        body.get("EndpointConfig") or {},
        running=is_running(c.state.status),
        resolv_conf="" if c.host_config.get("Dns") else c.resolv_conf_path,
    )
    return web.Response(status=200)


async def post_network_disconnect(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, DISCONNECT)
    c = request.app[DAEMON_KEY].containers.get(str(body.get("Container") or ""))
    await _networks(request).disconnect(
        request.match_info["id"], c.id, force=bool(body.get("Force"))
    )
    return web.Response(status=200)


def register(routes: Routes) -> None:
    routes.add("GET", "/networks", get_networks)
    routes.add("POST", "/networks/create", post_networks_create)
    routes.add("POST", "/networks/prune", post_networks_prune)
    routes.add("GET", "/networks/{id}", get_network)
    routes.add("DELETE", "/networks/{id}", delete_network)
    routes.add("POST", "/networks/{id}/connect", post_network_connect)
    routes.add("POST", "/networks/{id}/disconnect", post_network_disconnect)
