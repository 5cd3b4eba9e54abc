"""Distribution routes: ``GET /distribution/{name}/json`` (docker-py's
``inspect_distribution``, the CLI's ``--platform`` checks)."""

from __future__ import annotations

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response
from whaled.distribution.auth import decode_registry_auth
from whaled.image.reference import parse_normalized_named


async def get_distribution_json(request: web.Request) -> web.StreamResponse:
    ref = parse_normalized_named(request.match_info["name"])
    credentials = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    found = await request.app[DAEMON_KEY].distribution.inspect(ref, credentials)
    platforms = []
    for p in found.platforms:
        entry = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            entry["variant"] = p.variant
        platforms.append(entry)
    return json_response(
        {
            "Descriptor": {
                "mediaType": found.media_type,
                "digest": found.digest,
                "size": found.size,
            },
            "Platforms": platforms,
        }
    )


def register(routes: Routes) -> None:
    routes.add("GET", "/distribution/{name:.*}/json", get_distribution_json)
