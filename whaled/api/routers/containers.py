"""Container routes: create, list, inspect, lifecycle, attach, logs, wait, archive, commit.

Attach takes over the connection (``whaled.api.hijack``); logs and stats
stream ordinary chunked responses. Every handler takes the config snapshot at most once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from aiohttp import web

from whaled.api.app import (
    API_VERSION_KEY,
    DAEMON_KEY,
    Routes,
    json_response,
    request_config,
)
from whaled.api.filters import parse_filters
from whaled.api.framing import DEFAULT_DETACH_KEYS, detacher_for, mux_frame, parse_detach_keys
from whaled.api.hijack import hijack
from whaled.api.lane import QuickAnswer, QuickRequest
from whaled.api.params import HasQuery, bool_param, int_param, json_body, size_param
from whaled.api.schema import containers as schema
from whaled.api.shape.containers import shape_inspect, shape_list_item, view_of
from whaled.api.shape.stats import shape_stats
from whaled.api.streams import drain_body, send_body, while_connected
from whaled.api.uploads import open_body
from whaled.api.versions import ApiVersion
from whaled.daemon.container_io import (
    ContainerIO,
    ContainerSummary,
    StatsSample,
    format_timestamp,
)
from whaled.daemon.containers import ContainerService
from whaled.daemon.pump import ClientIO
from whaled.errors import Conflict, InvalidParameter, NotFound
from whaled.logger.reader import LogEntry

log = logging.getLogger("whaled.api")

MUX = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"


def _svc(request: web.Request) -> ContainerService:
    return request.app[DAEMON_KEY].containers


def _io(request: web.Request) -> ContainerIO:
    return request.app[DAEMON_KEY].container_io


def _version(request: web.Request) -> ApiVersion:
    version: ApiVersion = request[API_VERSION_KEY]
    return version


def _id(request: web.Request) -> str:
    return request.match_info["id"]


# ------------------------------------------------------------------ create / list / inspect


async def post_containers_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, schema.CREATE)
    result = await _svc(request).create(
        request_config(request),
        body,
        name=request.query.get("name") or None,
        platform=request.query.get("platform") or None,
    )
    return json_response({"Id": result.id, "Warnings": result.warnings}, status=201)


@dataclass(frozen=True, slots=True)
class _ListQuery:
    filters: Mapping[str, tuple[str, ...]]
    all: bool
    limit: int
    size: bool


#: a query without parameters (``docker ps``, pollers): running containers, no filters
_DEFAULT_LIST_QUERY = _ListQuery(filters=MappingProxyType({}), all=False, limit=-1, size=False)


def _list_query(request: HasQuery) -> _ListQuery:
    if not request.query:
        return _DEFAULT_LIST_QUERY
    filters = parse_filters(request.query.get("filters"))
    return _ListQuery(
        filters={k: filters.get(k) for k in filters},
        all=bool_param(request, "all"),
        limit=int_param(request, "limit", -1) or -1,
        size=bool_param(request, "size"),
    )


def _list_body(views: Sequence[ContainerSummary]) -> list[dict[str, Any]]:
    now = time.time()
    return [shape_list_item(view_of(v), now) for v in views]


async def get_containers_json(request: web.Request) -> web.StreamResponse:
    q = _list_query(request)
    views = await _io(request).list_containers(
        filters=q.filters, all=q.all, limit=q.limit, size=q.size
    )
    return json_response(_list_body(views))


def quick_containers_json(request: QuickRequest) -> QuickAnswer | None:
    q = _list_query(request)
    if q.size:
        return None  # sizes are read in a thread
    io = request.daemon.container_io
    return QuickAnswer.json(_list_body(io.summaries(filters=q.filters, all=q.all, limit=q.limit)))


async def get_container_json(request: web.Request) -> web.StreamResponse:
    summary = await _io(request).view(_id(request), size=bool_param(request, "size"))
    return json_response(shape_inspect(view_of(summary), _version(request)))


def quick_container_json(request: QuickRequest) -> QuickAnswer | None:
    if bool_param(request, "size"):
        return None  # sizes are read in a thread
    summary = request.daemon.container_io.summary(request.match_info["id"])
    return QuickAnswer.json(shape_inspect(view_of(summary), request.api_version))


# ------------------------------------------------------------------ lifecycle


async def post_container_start(request: web.Request) -> web.StreamResponse:
    await _svc(request).start(request_config(request), _id(request))
    return web.Response(status=204)


async def post_container_stop(request: web.Request) -> web.StreamResponse:
    await _svc(request).stop(
        _id(request), timeout=int_param(request, "t"), signal=request.query.get("signal")
    )
    return web.Response(status=204)


async def post_container_restart(request: web.Request) -> web.StreamResponse:
    await _svc(request).restart(
        request_config(request), _id(request), timeout=int_param(request, "t")
    )
    return web.Response(status=204)


async def post_container_kill(request: web.Request) -> web.StreamResponse:
    await _svc(request).kill(_id(request), request.query.get("signal"))
    return web.Response(status=204)


async def post_container_pause(request: web.Request) -> web.StreamResponse:
    await _svc(request).pause(_id(request))
    return web.Response(status=204)


async def post_container_unpause(request: web.Request) -> web.StreamResponse:
    await _svc(request).unpause(_id(request))
    return web.Response(status=204)


async def post_container_wait(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    condition = request.query.get("condition", "")
    svc.get(_id(request))  # 404 before the status line goes out
    # dockerd sends the headers at once and the body when the condition is met, so a
    # client can start the container after the wait request has been accepted.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    wait = asyncio.ensure_future(svc.wait(_id(request), condition))
    await asyncio.sleep(0)
    if wait.done() and wait.exception() is not None:
        raise wait.exception()  # type: ignore[misc]
    await response.prepare(request)
    try:
        result = await wait
        body: dict[str, Any] = {"StatusCode": result.status_code}
        body["Error"] = {"Message": result.error} if result.error else None
    except Exception as e:
        body = {"StatusCode": -1, "Error": {"Message": str(e)}}
    finally:
        if not wait.done():
            wait.cancel()
    try:
        await response.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")
        await response.write_eof()
    except ConnectionError:
        pass  # the client stopped waiting
    return response


async def delete_container(request: web.Request) -> web.StreamResponse:
    if bool_param(request, "link"):
        # dockerd's wording; its status is a 500 (an unclassified error), but the request is
        # what is wrong: a 409, as the message says.
        raise Conflict("Conflict, cannot remove the default link name of the container")
    await _svc(request).remove(
        _id(request), force=bool_param(request, "force"), volumes=bool_param(request, "v")
    )
    return web.Response(status=204)


async def delete_link(request: web.Request) -> web.StreamResponse:
    """``docker rm --link /parent/alias``: the URL's name is the link's, ``parent/alias``."""
    parent, alias = request.match_info["parent"], request.match_info["alias"]
    if not bool_param(request, "link"):
        raise NotFound(f"No such container: {parent}/{alias}")
    try:
        await _svc(request).remove_link(parent, alias)
    except NotFound:
        name = f"/{parent}/{alias}"
        # dockerd's wording (with a 500 there): the parent is not found, a 404.
        raise NotFound(f"Cannot get parent /{parent} for link name {name}") from None
    return web.Response(status=204)


async def post_container_rename(request: web.Request) -> web.StreamResponse:
    await _svc(request).rename(_id(request), request.query.get("name", ""))
    return web.Response(status=204)


async def post_container_update(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, schema.UPDATE)
    warnings = await _svc(request).update(_id(request), body)
    return json_response({"Warnings": warnings})


async def post_containers_prune(request: web.Request) -> web.StreamResponse:
    filters = parse_filters(request.query.get("filters"))
    deleted, reclaimed = await _io(request).prune({k: filters.get(k) for k in filters})
    return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})


# ------------------------------------------------------------------ attach / resize


async def post_container_attach(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(_id(request))
    keys = parse_detach_keys(request.query.get("detachKeys") or DEFAULT_DETACH_KEYS)
    want_stdin = bool_param(request, "stdin")
    want_out = bool_param(request, "stdout")
    want_err = bool_param(request, "stderr")
    tty = bool(c.config.get("Tty"))
    if not bool_param(request, "stream") and not bool_param(request, "logs"):
        raise InvalidParameter("at least one of stream or logs must be set")
    stream = await hijack(request, tty=tty)
    try:
        if bool_param(request, "logs"):
            async for batch in _io(request).logs(
                c.id, stdout=want_out, stderr=want_err, follow=False, coalesce=True
            ):
                for entry in batch:
                    await stream.write_frame(1 if entry.stream == "stdout" else 2, entry.data)
        if bool_param(request, "stream"):
            await _io(request).attach(
                c,
                ClientIO(
                    stdin=stream.read if want_stdin else None,
                    output=stream.write_frame,
                    gone=stream.wait_closed(),
                ),
                stdout=want_out,
                stderr=want_err,
                detacher=detacher_for(keys, tty=tty, stdin=want_stdin),
                eof_closes_stdin=bool(c.config.get("StdinOnce")) and not tty,
            )
    finally:
        await stream.close()
    return stream.response


async def post_container_resize(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    c = svc.get(_id(request))
    height, width = size_param(request, "h"), size_param(request, "w")
    task = svc.running_task(c)
    await task.resize(width, height)
    return web.Response(status=200)


# ------------------------------------------------------------------ logs / top / stats


async def get_container_logs(request: web.Request) -> web.StreamResponse:
    io = _io(request)
    c = _svc(request).get(_id(request))
    stdout, stderr = bool_param(request, "stdout"), bool_param(request, "stderr")
    if not (stdout or stderr):
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tail_raw = request.query.get("tail", "all")
    tail: int | None = None
    if tail_raw not in ("", "all"):
        try:
            tail = max(int(tail_raw), 0)
        except ValueError:
            tail = None
    since = io.parse_log_time(request.query.get("since", ""))
    until = io.parse_log_time(request.query.get("until", ""))
    timestamps = bool_param(request, "timestamps")
    entries = io.logs(
        c.id,
        stdout=stdout,
        stderr=stderr,
        since_ns=since,
        until_ns=until,
        tail=tail,
        follow=bool_param(request, "follow"),
        coalesce=not timestamps,  # a frame may carry several lines
    )
    # The status is decided (container found, log readable): headers go out now, not with
    # the first output (a follower of a silent container must know it is attached), and
    # a later read error goes into the stream, as dockerd's WriteLogStream does.
    tty = bool(c.config.get("Tty"))
    mux = not tty and _version(request) >= (1, 42)
    response = web.StreamResponse(headers={"Content-Type": MUX if mux else RAW})
    try:
        await response.prepare(request)
        while (batch := await while_connected(request, _next(entries))) is not None:
            await response.write(_log_bytes(batch, tty=tty, timestamps=timestamps))
    except ConnectionError:
        log.debug("logs of %s: the client closed the stream", c.id[:12])
        return response
    except Exception as e:
        log.debug("logs of %s failed mid-stream: %s", c.id[:12], e)
        text = f"Error grabbing logs: {e}\n".encode()
        try:
            await response.write(_system_error_frame(text) if not tty else text)
        except ConnectionError:
            return response
    finally:
        close = getattr(entries, "aclose", None)
        if close is not None:
            await close()
    await response.write_eof()
    return response


def _system_error_frame(data: bytes) -> bytes:
    """A frame on dockerd's ``Systemerr`` stream (3), which ``mux_frame`` does not make."""
    return struct.pack(">BxxxL", 3, len(data)) + data


def _log_bytes(batch: list[LogEntry], *, tty: bool, timestamps: bool) -> bytes:
    """One write per batch: a 200 MB log is ~2 M lines."""
    parts: list[bytes] = []
    for entry in batch:
        data = entry.data
        if timestamps:
            data = format_timestamp(entry.timestamp_ns).encode() + b" " + data
        parts.append(data if tty else mux_frame(1 if entry.stream == "stdout" else 2, data))
    return b"".join(parts)


async def _next(entries: Any) -> Any:
    try:
        return await entries.__anext__()
    except StopAsyncIteration:
        return None


async def get_container_top(request: web.Request) -> web.StreamResponse:
    titles, processes = await _io(request).top(_id(request), request.query.get("ps_args", ""))
    return json_response({"Titles": titles, "Processes": processes})


def _shape_stats(sample: StatsSample, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    return shape_stats(
        sample.raw,
        container_id=sample.container_id,
        name=sample.name,
        read=sample.read,
        system_cpu_ns=sample.system_cpu_ns,
        online_cpus=sample.online_cpus,
        cgroup_version=sample.cgroup_version,
        host_memory=sample.host_memory,
        previous=previous,
        networks=sample.networks,
    )


async def get_container_stats(request: web.Request) -> web.StreamResponse:
    io = _io(request)
    stream = bool_param(request, "stream", True)
    c = _svc(request).get(_id(request))
    if not stream:
        before = None
        if not bool_param(request, "one-shot"):
            # dockerd's non-streamed answer carries a CPU delta over one second.
            before = _shape_stats(await io.stats_sample(c.id), None)
            await asyncio.sleep(1.0)
        return json_response(_shape_stats(await io.stats_sample(c.id), before))
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    previous: Mapping[str, Any] | None = None
    try:
        while True:
            body = _shape_stats(await io.stats_sample(c.id), previous)
            await response.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")
            previous = body
            if not io.is_running(c.id):
                break
            await asyncio.sleep(1.0)
    except ConnectionError:
        return response
    await response.write_eof()
    return response


# ------------------------------------------------------------------ files


def _stat_header(stat: Mapping[str, Any]) -> str:
    return base64.b64encode(json.dumps(stat, separators=(",", ":")).encode()).decode()


async def head_container_archive(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameter("path is required")
    stat = await _io(request).stat_path(_id(request), path)
    return web.Response(status=200, headers={"X-Docker-Container-Path-Stat": _stat_header(stat)})


async def get_container_archive(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameter("path is required")
    stat, chunks = await _io(request).archive(_id(request), path)
    stat_header = _stat_header(stat)
    headers = {"Content-Type": "application/x-tar", "X-Docker-Container-Path-Stat": stat_header}
    return await send_body(request, chunks, headers)


async def put_container_archive(request: web.Request) -> web.StreamResponse:
    path = request.query.get("path", "")
    if not path:
        raise InvalidParameter("path is required")
    body = open_body(request)
    try:
        await _io(request).extract(
            _id(request),
            path,
            body,
            no_overwrite_dir_non_dir=bool_param(request, "noOverwriteDirNonDir"),
            copy_uid_gid=bool_param(request, "copyUIDGID"),
        )
    except Exception:
        await drain_body(request)
        raise
    finally:
        body.close()
    return web.Response(status=200)


async def get_container_export(request: web.Request) -> web.StreamResponse:
    chunks = await _io(request).export(_id(request))
    return await send_body(request, chunks, {"Content-Type": "application/x-tar"})


async def get_container_changes(request: web.Request) -> web.StreamResponse:
    changes = await _io(request).changes(_id(request))
    return json_response(changes or None)


async def post_commit(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, schema.COMMIT, required=False)
    q = request.query
    image_id = await _io(request).commit(
        q.get("container", ""),
        repo=q.get("repo") or None,
        tag=q.get("tag") or None,
        comment=q.get("comment", ""),
        author=q.get("author", ""),
        pause=bool_param(request, "pause", True),
        changes=q.getall("changes", []),
        config=body or None,
    )
    return json_response({"Id": image_id}, status=201)


def register(routes: Routes) -> None:
    routes.add("POST", "/containers/create", post_containers_create)
    routes.add("GET", "/containers/json", get_containers_json, quick=quick_containers_json)
    routes.add("POST", "/containers/prune", post_containers_prune)
    routes.add("POST", "/commit", post_commit)
    routes.add("GET", "/containers/{id}/json", get_container_json, quick=quick_container_json)
    routes.add("GET", "/containers/{id}/top", get_container_top)
    routes.add("GET", "/containers/{id}/logs", get_container_logs)
    routes.add("GET", "/containers/{id}/changes", get_container_changes)
    routes.add("GET", "/containers/{id}/export", get_container_export)
    routes.add("GET", "/containers/{id}/stats", get_container_stats)
    routes.add("POST", "/containers/{id}/resize", post_container_resize)
    routes.add("POST", "/containers/{id}/start", post_container_start)
    routes.add("POST", "/containers/{id}/stop", post_container_stop)
    routes.add("POST", "/containers/{id}/restart", post_container_restart)
    routes.add("POST", "/containers/{id}/kill", post_container_kill)
    routes.add("POST", "/containers/{id}/update", post_container_update)
    routes.add("POST", "/containers/{id}/rename", post_container_rename)
    routes.add("POST", "/containers/{id}/pause", post_container_pause)
    routes.add("POST", "/containers/{id}/unpause", post_container_unpause)
    routes.add("POST", "/containers/{id}/attach", post_container_attach)
    routes.add("POST", "/containers/{id}/wait", post_container_wait)
    routes.add("DELETE", "/containers/{id}", delete_container)
    routes.add("DELETE", "/containers/{parent}/{alias}", delete_link)
    routes.add("HEAD", "/containers/{id}/archive", head_container_archive)
    routes.add("GET", "/containers/{id}/archive", get_container_archive)
    routes.add("PUT", "/containers/{id}/archive", put_container_archive)
