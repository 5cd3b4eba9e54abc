"""Volume routes: create, list, inspect, remove, prune (``docker volume``)."""

from __future__ import annotations

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response
from whaled.api.filters import parse_filters
from whaled.api.params import bool_param, json_body
from whaled.api.schema.volumes import CREATE
from whaled.api.shape.volumes import shape_volume
from whaled.daemon.volumes import VolumeService
from whaled.errors import InvalidParameter


def _volumes(request: web.Request) -> VolumeService:
    return request.app[DAEMON_KEY].volumes


def _filters(request: web.Request) -> dict[str, tuple[str, ...]]:
    filters = parse_filters(request.query.get("filters"))
    return {key: filters.get(key) for key in filters}


async def post_volumes_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, CREATE, required=False)
    view = await _volumes(request).create(
        str(body.get("Name") or ""),
        driver=str(body.get("Driver") or ""),
        labels=body.get("Labels") or {},
        driver_opts=body.get("DriverOpts") or {},
    )
    return json_response(shape_volume(view), status=201)


async def get_volumes(request: web.Request) -> web.StreamResponse:
    views = _volumes(request).find(_filters(request))
    return json_response({"Volumes": [shape_volume(v) for v in views], "Warnings": None})


async def get_volume(request: web.Request) -> web.StreamResponse:
    return json_response(shape_volume(_volumes(request).inspect(request.match_info["name"])))


async def delete_volume(request: web.Request) -> web.StreamResponse:
    await _volumes(request).remove(request.match_info["name"], force=bool_param(request, "force"))
    return web.Response(status=204)


async def put_volume(request: web.Request) -> web.StreamResponse:
    _volumes(request).inspect(request.match_info["name"])  # 404 first
    raise InvalidParameter("volume updates are only for cluster volumes, and there is no swarm")


async def post_volumes_prune(request: web.Request) -> web.StreamResponse:
    report = await _volumes(request).prune(_filters(request))
    return json_response(
        {"VolumesDeleted": report.deleted or None, "SpaceReclaimed": report.reclaimed}
    )


def register(routes: Routes) -> None:
    routes.add("GET", "/volumes", get_volumes)
    routes.add("POST", "/volumes/create", post_volumes_create)
    routes.add("POST", "/volumes/prune", post_volumes_prune)
    routes.add("GET", "/volumes/{name}", get_volume)
    routes.add("DELETE", "/volumes/{name}", delete_volume)
    routes.add("PUT", "/volumes/{name}", put_volume)
