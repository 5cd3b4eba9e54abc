"""Image routes: list, inspect, history, tag, delete, prune, load, save, import.

Names may contain slashes (``localhost:5000/a/b:tag``), so name routes use ``{name:.*}``
followed by a fixed suffix; the fixed paths (``/images/json``, ``/images/get``,
``/images/search``, ``/images/create``, ``/images/load``, ``/images/prune``) are registered
first. Pull and search answer a clear 501 until the distribution issue; push checks the local
tag as dockerd does, then says in its stream that pushing is not supported yet.
"""

from __future__ import annotations

import logging

from aiohttp import web

from whaled.api.app import API_VERSION_KEY, DAEMON_KEY, Routes, json_response
from whaled.api.filters import Filters, parse_filters
from whaled.api.params import bool_param, int_param
from whaled.api.shape.images import (
    progress_json,
    shape_delete_records,
    shape_history,
    shape_image_list,
    shape_inspect,
    shape_prune,
)
from whaled.api.streams import (
    JsonStream,
    drain_body,
    send_body,
    status_message,
)
from whaled.api.uploads import open_body
from whaled.api.versions import ApiVersion
from whaled.daemon.distribution import pull_request
from whaled.daemon.images import FilterArgs, ImageService
from whaled.distribution.auth import decode_registry_auth
from whaled.errors import InvalidParameter
from whaled.image.archive import ProgressEvent
from whaled.image.reference import parse_normalized_named

log = logging.getLogger("whaled.api")


def _images(request: web.Request) -> ImageService:
    return request.app[DAEMON_KEY].images


def _version(request: web.Request) -> ApiVersion:
    version: ApiVersion = request[API_VERSION_KEY]
    return version


def _filter_args(filters: Filters) -> dict[str, tuple[str, ...]]:
    return {key: filters.get(key) for key in filters}


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not name.strip():
        raise InvalidParameter("image name cannot be blank")
    return name


# ------------------------------------------------------------------ read-only


async def get_images_json(request: web.Request) -> web.StreamResponse:
    version = _version(request)
    args: FilterArgs = _filter_args(parse_filters(request.query.get("filters")))
    legacy = request.query.get("filter")
    if legacy and version < (1, 41):
        # The pre-1.28 ``filter`` parameter: a pattern on repository names.
        args = {**args, "reference": (*args.get("reference", ()), legacy)}
    rows = await _images(request).list_images(
        all=bool_param(request, "all"),
        filters=args,
        shared_size=version >= (1, 42) and bool_param(request, "shared-size"),
    )
    return json_response(shape_image_list(rows, version))


async def get_image_json(request: web.Request) -> web.StreamResponse:
    view = await _images(request).inspect(_name(request))
    return json_response(shape_inspect(view, _version(request)))


async def get_image_history(request: web.Request) -> web.StreamResponse:
    items = await _images(request).history(_name(request))
    return json_response(shape_history(items))


async def get_images_search(request: web.Request) -> web.StreamResponse:
    term = request.query.get("term", "")
    if not term:
        raise InvalidParameter("term is required")
    limit = int_param(request, "limit", 25)
    assert limit is not None
    if not 1 <= limit <= 100:
        raise InvalidParameter(f"limit {limit} is outside the range of [1, 100]")
    found = await request.app[DAEMON_KEY].distribution.search(
        term,
        limit,
        _filter_args(parse_filters(request.query.get("filters"))),
        decode_registry_auth(request.headers.get("X-Registry-Auth")),
    )
    return json_response(
        [
            {
                "star_count": int(r.get("star_count") or 0),
                "is_official": bool(r.get("is_official")),
                "name": str(r.get("name") or ""),
                "is_automated": bool(r.get("is_automated")),
                "description": str(r.get("description") or ""),
            }
            for r in found
        ]
    )


# ------------------------------------------------------------------ tag / delete / prune


async def post_image_tag(request: web.Request) -> web.StreamResponse:
    await _images(request).tag(
        _name(request), request.query.get("repo", ""), request.query.get("tag") or None
    )
    return web.Response(status=201)


async def delete_image(request: web.Request) -> web.StreamResponse:
    records = await _images(request).remove(
        _name(request),
        force=bool_param(request, "force"),
        prune=not bool_param(request, "noprune"),
    )
    return json_response(shape_delete_records(records))


async def post_images_prune(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query.get("filters"))
    report = await _images(request).prune(_filter_args(filters))
    return json_response(shape_prune(report))


# ------------------------------------------------------------------ load / save / import


async def post_images_load(request: web.Request) -> web.StreamResponse:
    quiet = bool_param(request, "quiet", True)  # dockerd's default
    stream = JsonStream(request)
    body = open_body(request)

    async def send(event: ProgressEvent) -> None:
        await stream.send(progress_json(event))

    # dockerd answers 200 before reading the archive: a broken or truncated one is an
    # error in the stream (docker-py raises ImageLoadError for it, the CLI prints it).
    await stream.start()
    try:
        async with stream.errors_in_stream():
            await _images(request).load(body, quiet=quiet, sink=send)
    finally:
        body.close()
    await drain_body(request)  # what an error left unread, so that the client gets the answer
    return await stream.finish()


async def post_images_create(request: web.Request) -> web.StreamResponse:
    query = request.query
    from_image = query.get("fromImage", "")
    if from_image:
        return await _pull(request, from_image)
    source = query.get("fromSrc", "")
    if source != "-":
        if not source:
            raise InvalidParameter("either fromImage or fromSrc is required")
        raise InvalidParameter(
            f"importing from a URL ({source}) is not supported: send the rootfs tar in the "
            "request body (fromSrc=-)"
        )
    stream = JsonStream(request)
    body = open_body(request)
    try:
        async with stream.errors_in_stream():
            image_id = await _images(request).import_rootfs(
                body,
                repo=query.get("repo") or None,
                tag=query.get("tag") or None,
                changes=query.getall("changes", []),
                message=query.get("message", ""),
                platform=query.get("platform") or None,
            )
            await stream.send(status_message(image_id))
    except Exception:
        await drain_body(request)
        raise
    finally:
        body.close()
    return await stream.finish()


async def _pull(request: web.Request, from_image: str) -> web.StreamResponse:
    query = request.query
    req = pull_request(
        from_image,
        query.get("tag", ""),
        query.get("platform", ""),
        decode_registry_auth(request.headers.get("X-Registry-Auth")),
    )
    stream = JsonStream(request)

    async def send(event: ProgressEvent) -> None:
        await stream.send(progress_json(event))

    async with stream.errors_in_stream():
        await request.app[DAEMON_KEY].distribution.pull(req, send)
    return await stream.finish()


async def _send_archive(request: web.Request, names: list[str]) -> web.StreamResponse:
    archive = await _images(request).save(names)  # 404/400 before the first byte
    return await send_body(request, archive, {"Content-Type": "application/x-tar"})


async def get_images_get(request: web.Request) -> web.StreamResponse:
    return await _send_archive(request, request.query.getall("names", []))


async def get_image_get(request: web.Request) -> web.StreamResponse:
    return await _send_archive(request, [_name(request)])


async def post_image_push(request: web.Request) -> web.StreamResponse:
    ref = parse_normalized_named(_name(request))  # an invalid reference is still a 400
    tag = request.query.get("tag", "")
    if tag:
        ref = ref.with_tag(tag)
    credentials = decode_registry_auth(request.headers.get("X-Registry-Auth"))
    stream = JsonStream(request)

    async def send(event: ProgressEvent) -> None:
        await stream.send(progress_json(event))

    # As dockerd: the first message goes out before the local image is looked up, so a
    # missing tag is an error in the stream, not a status code.
    await stream.send(status_message(f"The push refers to repository [{ref.name}]"))
    async with stream.errors_in_stream():
        await _images(request).check_pushable(ref)
        await request.app[DAEMON_KEY].distribution.push(ref, credentials, send)
    return await stream.finish()


def register(routes: Routes) -> None:
    # Fixed paths first, then the ``{name:.*}`` ones (a name may contain slashes).
    routes.add("GET", "/images/json", get_images_json)
    routes.add("GET", "/images/search", get_images_search)
    routes.add("GET", "/images/get", get_images_get)
    routes.add("POST", "/images/create", post_images_create)
    routes.add("POST", "/images/load", post_images_load)
    routes.add("POST", "/images/prune", post_images_prune)
    routes.add("GET", "/images/{name:.*}/json", get_image_json)
    routes.add("GET", "/images/{name:.*}/history", get_image_history)
    routes.add("GET", "/images/{name:.*}/get", get_image_get)
    routes.add("POST", "/images/{name:.*}/tag", post_image_tag)
    routes.add("POST", "/images/{name:.*}/push", post_image_push)
    routes.add("DELETE", "/images/{name:.*}", delete_image)
