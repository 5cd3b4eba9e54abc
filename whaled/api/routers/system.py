"""System routes: /_ping, /version, /info, /system/df, /auth."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web

from whaled.api.app import API_VERSION_KEY, DAEMON_KEY, Routes, json_response, request_config
from whaled.api.early import PING_HEADERS
from whaled.api.lane import QuickAnswer, QuickRequest
from whaled.api.params import json_body
from whaled.api.schema.registry import AUTH
from whaled.api.shape.containers import shape_list_item, view_of
from whaled.api.shape.images import DF_TYPES, shape_build_cache_record, shape_disk_usage
from whaled.api.shape.system import shape_info, shape_version
from whaled.api.shape.volumes import shape_volume
from whaled.api.versions import CURRENT_API_VERSION, ApiVersion
from whaled.distribution.auth import credentials_from
from whaled.errors import InvalidParameter


async def get_system_ping(request: web.Request) -> web.StreamResponse:
    body = b"" if request.method == "HEAD" else b"OK"
    response = web.Response(body=body, content_type="text/plain", headers=PING_HEADERS)
    response.headers["Api-Version"] = CURRENT_API_VERSION
    return response


def quick_system_ping(request: QuickRequest) -> QuickAnswer:
    return QuickAnswer(b"OK", content_type="text/plain", headers=PING_HEADERS)


async def get_system_version(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    cfg = request_config(request)
    return json_response(shape_version(daemon.system.version(cfg)))


def quick_system_version(request: QuickRequest) -> QuickAnswer:
    return QuickAnswer.json(shape_version(request.daemon.system.version(request.config)))


async def get_system_info(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    cfg = request_config(request)
    return json_response(shape_info(daemon.system.info(cfg), request[API_VERSION_KEY]))


async def get_system_df(request: web.Request) -> web.StreamResponse:
    version: ApiVersion = request[API_VERSION_KEY]
    types: tuple[str, ...] = DF_TYPES
    if version >= (1, 42) and "type" in request.query:
        types = tuple(request.query.getall("type"))
        for kind in types:
            if kind not in DF_TYPES:
                raise InvalidParameter(f"unknown object type: {kind}")
    usage = await request.app[DAEMON_KEY].images.disk_usage() if "image" in types else None
    containers: list[dict[str, Any]] = []
    if "container" in types:
        views = await request.app[DAEMON_KEY].container_io.list_containers(
            filters={}, all=True, limit=-1, size=True
        )
        now = time.time()
        containers = [shape_list_item(view_of(v), now) for v in views]
    volumes: list[dict[str, Any]] = []
    if "volume" in types:
        sized = await asyncio.to_thread(request.app[DAEMON_KEY].volumes.sizes)
        volumes = [shape_volume(v, usage=True) for v in sized]
    build_cache: list[dict[str, Any]] = []
    if "build-cache" in types:
        build_cache = [
            shape_build_cache_record(
                os.path.basename(c.root), c.size, c.created, c.last_used, c.users > 0,
                c.usage_count,
            )
            for c in request.app[DAEMON_KEY].builder.cache_records()
        ]  # fmt: skip
    return json_response(shape_disk_usage(usage, version, types, containers, volumes, build_cache))


async def post_system_auth(request: web.Request) -> web.StreamResponse:
    """``docker login``: the credentials are checked against the registry, never stored."""
    credentials = credentials_from(await json_body(request, AUTH))
    token = await request.app[DAEMON_KEY].distribution.login(credentials)
    return json_response({"Status": "Login Succeeded", "IdentityToken": token})


def register(routes: Routes) -> None:
    routes.add("GET", "/_ping", get_system_ping, quick=quick_system_ping, head=True)
    routes.add("GET", "/version", get_system_version, quick=quick_system_version)
    routes.add("GET", "/info", get_system_info)
    routes.add("GET", "/system/df", get_system_df)
    routes.add("POST", "/auth", post_system_auth)
