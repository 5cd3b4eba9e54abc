"""``POST /build`` (dockerd's legacy builder): query parameters → ``BuildOptions``, the tar
context streamed to the build service, its progress as dockerd's JSON stream."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response
from whaled.api.filters import parse_filters
from whaled.api.params import bool_param, int_param
from whaled.api.shape.images import progress_json
from whaled.api.streams import JsonStream, drain_body, while_connected
from whaled.api.uploads import open_body
from whaled.daemon.builder import BuildOptions
from whaled.distribution.auth import decode_registry_config
from whaled.errors import InvalidParameter, Unsupported
from whaled.image.archive import ProgressEvent


def _json_query(request: web.Request, key: str) -> dict[str, Any]:
    text = request.query.get(key, "")
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        raise InvalidParameter(f"invalid {key}: {text}") from None
    if not isinstance(doc, dict):
        raise InvalidParameter(f"invalid {key}: {text}")
    return doc


def build_options(request: web.Request) -> BuildOptions:
    q = request.query
    if bool_param(request, "squash"):
        raise InvalidParameter("squash is only supported with experimental mode")
    if q.get("outputs"):
        raise Unsupported("outputs are a BuildKit feature: whaled's builder is the legacy one")
    extra_hosts = tuple(h for h in q.get("extrahosts", "").split(",") if h) + tuple(
        q.getall("extrahosts[]", [])
    )
    return BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile",
        tags=tuple(q.getall("t", [])),
        build_args={
            str(k): (None if v is None else str(v))
            for k, v in _json_query(request, "buildargs").items()
        },
        target=q.get("target", ""),
        no_cache=bool_param(request, "nocache"),
        labels={str(k): str(v) for k, v in _json_query(request, "labels").items()},
        network_mode=q.get("networkmode", ""),
        extra_hosts=extra_hosts,
        shm_size=int_param(request, "shmsize") or 0,
        memory=int_param(request, "memory") or 0,
        quiet=bool_param(request, "q"),
        pull=bool_param(request, "pull"),
        remote=q.get("remote", ""),
        platform=q.get("platform", ""),
        registry_auth=decode_registry_config(request.headers.get("X-Registry-Config")),
    )


async def post_build(request: web.Request) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    opts = build_options(request)
    stream = JsonStream(request)
    body = open_body(request, direct=True)  # the context: read by the worker itself

    async def pull_progress(event: ProgressEvent) -> None:
        await stream.send(progress_json(event))

    try:
        async with stream.errors_in_stream():
            # a client that goes away cancels the build (its RUN container goes too)
            await while_connected(
                request,
                daemon.builder.build(daemon.config(), body, opts, stream.send, pull_progress),
            )
    finally:
        body.close()
    await drain_body(request)
    return await stream.finish()


#: the filters ``docker builder prune`` may send (BuildKit's)
PRUNE_FILTERS = ("until", "id", "parent", "type", "description", "inuse", "shared", "private")


async def post_build_prune(request: web.Request) -> web.StreamResponse:
    """``docker builder prune``: on dockerd it prunes BuildKit's cache, which legacy builds
    never fill (their cache is intermediate images, pruned by ``docker image prune``).
    whaled's build cache beyond intermediate images is the kept contexts: they go."""
    for key in parse_filters(request.query.get("filters")):
        if key not in PRUNE_FILTERS:
            raise InvalidParameter(f"filter {key!r} is invalid")
    deleted, reclaimed = await request.app[DAEMON_KEY].builder.prune()
    return json_response({"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(routes: Routes) -> None:
    routes.add("POST", "/build", post_build)
    routes.add("POST", "/build/prune", post_build_prune)
