"""System routes: /_ping, /version, /info."""

from __future__ import annotations

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response, request_config
from whaled.api.shape.system import shape_info, shape_version
from whaled.api.versions import CURRENT_API_VERSION

PING_HEADERS = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Builder-Version": "1",
    "Swarm": "inactive",
}


async def get_ping(request: web.Request) -> web.StreamResponse:
    body = b"" if request.method == "HEAD" else b"OK"
    response = web.Response(body=body, content_type="text/plain", headers=PING_HEADERS)
    response.headers["Api-Version"] = CURRENT_API_VERSION
    return response


async def get_version(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    cfg = request_config(request)
    return json_response(shape_version(daemon.system.version(cfg)))


async def get_info(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    cfg = request_config(request)
    return json_response(shape_info(daemon.system.info(cfg), request["api_version"]))


def register(routes: Routes) -> None:
    routes.add("GET", "/_ping", get_ping)
    routes.add("HEAD", "/_ping", get_ping)
    routes.add("GET", "/version", get_version)
    routes.add("GET", "/info", get_info)
