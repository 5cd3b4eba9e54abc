"""Exec routes: create, start (takes over the connection, ``whaled.api.hijack``), resize,
inspect."""

from __future__ import annotations

import contextlib

from aiohttp import web

from whaled.api.app import DAEMON_KEY, Routes, json_response
from whaled.api.framing import DEFAULT_DETACH_KEYS, detacher_for, parse_detach_keys
from whaled.api.hijack import ClientGone, hijack
from whaled.api.params import json_body, size_param
from whaled.api.schema import containers as schema
from whaled.daemon.execs import ExecService
from whaled.daemon.pump import ClientIO, PumpEnd


def _execs(request: web.Request) -> ExecService:
    return request.app[DAEMON_KEY].execs


def _id(request: web.Request) -> str:
    return request.match_info["id"]


# ------------------------------------------------------------------ exec


#: dockerd's last words on an exec stream the client detached from (its error path).
EXEC_DETACHED_MESSAGE = "exec attach failed: error on attach stdin: read escape sequence"


async def post_exec_create(request: web.Request) -> web.StreamResponse:
    body = await json_body(request, schema.EXEC_CREATE)
    if body.get("DetachKeys"):
        # refused at create, as dockerd does, not first when the exec starts
        parse_detach_keys(body["DetachKeys"])
    session = _execs(request).create(_id(request), body)
    return json_response({"Id": session.id}, status=201)


async def post_exec_start(request: web.Request) -> web.StreamResponse:
    execs = _execs(request)
    body = await json_body(request, schema.EXEC_START, required=False)
    exec_id = _id(request)
    session = execs.get(exec_id)
    if body.get("Detach"):
        await execs.start(exec_id, connect=None)
        return web.Response(status=200)
    tty = bool(body.get("Tty", session.tty))
    keys = parse_detach_keys(session.detach_keys or DEFAULT_DETACH_KEYS)
    execs.get(exec_id)  # 404 before hijacking
    stream = await hijack(request, tty=tty)
    try:
        try:
            end = await execs.start_attached(
                exec_id,
                ClientIO(
                    stdin=stream.read if session.attach_stdin else None,
                    output=stream.write_frame,
                    gone=stream.wait_closed(),
                ),
                detacher=detacher_for(keys, tty=session.tty, stdin=session.attach_stdin),
            )
        except Exception as e:
            await stream.write_frame(2, f"{e}\n".encode())
            return stream.response
        if end == PumpEnd.DETACHED:
            # Like dockerd: the error line, then the stream ends and the session's stdin
            # is closed.
            await execs.detached(exec_id)
            with contextlib.suppress(ClientGone):
                await stream.write_frame(1, f"{EXEC_DETACHED_MESSAGE}\r\n".encode())
            return stream.response
        if end == PumpEnd.OUTPUT_ENDED:
            await session.done.wait()
    finally:
        await stream.close()
    return stream.response


async def post_exec_resize(request: web.Request) -> web.StreamResponse:
    await _execs(request).resize(_id(request), size_param(request, "h"), size_param(request, "w"))
    return web.Response(status=200)


async def get_exec_json(request: web.Request) -> web.StreamResponse:
    return json_response(_execs(request).inspect(_id(request)))


def register(routes: Routes) -> None:
    routes.add("POST", "/containers/{id}/exec", post_exec_create)
    routes.add("POST", "/exec/{id}/start", post_exec_start)
    routes.add("POST", "/exec/{id}/resize", post_exec_resize)
    routes.add("GET", "/exec/{id}/json", get_exec_json)
