"""The aiohttp application: routes (with and without the /vX.Y prefix), middlewares, headers."""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from whaled.api.early import SERVER_HEADER
from whaled.api.errors import status_for
from whaled.api.lane import Lane, QuickHandler, encode_json
from whaled.api.limits import ServerLimits
from whaled.api.streams import client_gone
from whaled.api.versions import CURRENT_API_VERSION, ApiVersion, check_api_version
from whaled.config.model import Config
from whaled.daemon.daemon import Daemon
from whaled.errors import InvalidParameter, WhaledError

log = logging.getLogger("whaled.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DAEMON_KEY = web.AppKey("daemon", Daemon)
LANE_KEY = web.AppKey("lane", Lane)
LIMITS_KEY = web.AppKey("limits", ServerLimits)
API_VERSION_KEY = web.RequestKey[ApiVersion]("api_version")
CONFIG_KEY = web.RequestKey("config_snapshot", Config)
RESPONSE_STARTED_KEY = web.RequestKey("response_started", bool)


def json_response(body: Any, status: int = 200) -> web.Response:
    """dockerd's JSON encoding: compact, newline-terminated."""
    return web.Response(
        body=encode_json(body),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return json_response({"message": message}, status=status)


class BodyTimeout(Exception):
    """A request body did not arrive within the limit (answered 408, connection closed)."""


def body_too_large_message(limit: int) -> str:
    return f"request body too large: the limit for JSON request bodies is {limit} bytes"


def _limits(request: web.Request) -> ServerLimits:
    return request.app.get(LIMITS_KEY) or ServerLimits()


async def read_json_body(request: web.Request) -> bytes:
    """The whole body of a request that carries JSON, bounded in size and read time
    (``ServerLimits.json_body_max`` → 413, ``ServerLimits.body_timeout`` → 408). Streamed
    uploads read ``request.content`` instead and are bounded by neither."""
    limits = _limits(request)
    length = request.content_length
    if length is not None and length > limits.json_body_max:
        raise web.HTTPRequestEntityTooLarge(max_size=limits.json_body_max, actual_size=length)
    try:
        async with asyncio.timeout(limits.body_timeout):
            body = await request.read()
    except TimeoutError:
        raise BodyTimeout() from None
    check_json_content_type(request.headers.get("Content-Type"), body)
    return body


def check_json_content_type(content_type: str | None, body: bytes) -> None:
    """dockerd's rule for a JSON body: a Content-Type it names must be application/json
    (400 otherwise). What a browser may send without a CORS preflight (text/plain, forms)
    is thereby refused, so a web page cannot create containers through a reachable API.
    An empty body is not checked (Go's docker client labels body-less POSTs text/plain);
    a body without any Content-Type is accepted, as raw clients send that."""
    if not body or content_type is None or not content_type.strip():
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise InvalidParameter(
            f"Content-Type specified ({content_type}) must be 'application/json'"
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WhaledError as e:
        status = status_for(e)
        if status >= 500:
            log.error("Handler for %s %s returned error: %s", request.method, request.path, e)
        else:
            log.debug("Handler for %s %s returned error: %s", request.method, request.path, e)
        return _error_answer(request, status, e.message)
    except web.HTTPNotFound:
        return _error_answer(request, 404, "page not found")
    except web.HTTPMethodNotAllowed:
        return _error_answer(request, 405, "method not allowed")
    except web.HTTPRequestEntityTooLarge:
        limit = _limits(request).json_body_max
        return _error_answer(request, 413, body_too_large_message(limit))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _error_answer(request, e.status, e.reason)
    except BodyTimeout:
        log.debug("%s %s: the request body did not arrive in time", request.method, request.path)
        response = error_response(408, "timed out reading the request body")
        response.force_close()
        # Answer and close now: aiohttp would otherwise linger, reading the rest of a
        # body that is not coming.
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
        return response
    except ConnectionError as e:
        if not client_gone(request):
            log.exception("Handler for %s %s failed", request.method, request.path)
            return _error_answer(request, 500, f"internal error: {e}")
        # The client went away mid-request: nothing to answer, nothing to report.
        log.debug("%s %s: the client closed the connection (%s)", request.method, request.path, e)
        response = web.Response(status=400)
        response.force_close()
        return response
    except Exception as e:
        log.exception("Handler for %s %s failed", request.method, request.path)
        return _error_answer(request, 500, f"internal error: {e}")
    finally:
        _drop_upload(request)


def _drop_upload(request: web.Request) -> None:
    """An upload the connection's tap took over (``api.uploads``) that the handler did not
    read, after an error answer say: its body is dropped as it arrives, so that the
    connection does not stall. Duck-typed: uploads builds on this module."""
    token = request.headers.get("X-Whaled-Upload")
    if token is None or request.transport is None:
        return
    take = getattr(request.transport.get_protocol(), "take_upload", None)
    pipe = take(token) if take is not None else None
    if pipe is not None:
        pipe.close()


def _error_answer(request: web.Request, status: int, message: str) -> web.StreamResponse:
    """The error response, while the status can still be chosen. Once the handler's
    response has started (status line out), a second response must not follow it: the
    connection is closed instead, so the client sees a cut stream rather than a complete
    one (streams that can carry an error message, like JSON progress and logs, send it
    themselves before this point)."""
    if not request.get(RESPONSE_STARTED_KEY, False):
        return error_response(status, message)
    log.debug(
        "%s %s: error after the response started, closing: %s",
        request.method,
        request.path,
        message,
    )
    if request.transport is not None:
        request.transport.close()
    response = web.Response(status=status)
    response.force_close()
    return response


def clean_path(path: str) -> str:
    """The path dockerd's router would redirect to: ``.``/``..`` resolved, slashes merged,
    a trailing slash kept (Go's ``path.Clean`` plus gorilla/mux's trailing-slash rule)."""
    if not path.startswith("/"):
        path = "/" + path
    cleaned = "/" + posixpath.normpath(path).lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


@web.middleware
async def clean_path_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path that is not clean (docker-py's ``containers//name/json`` for a name given
    with its leading slash) gets dockerd's 301 to the clean one, query kept."""
    raw = request.rel_url.raw_path
    cleaned = clean_path(raw)
    if cleaned != raw:
        query = request.rel_url.raw_query_string
        location = cleaned + ("?" + query if query else "")
        return web.Response(status=301, headers={"Location": location})
    return await handler(request)


@web.middleware
async def version_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[API_VERSION_KEY] = check_api_version(request.match_info.get("version"))
    return await handler(request)


def request_config(request: web.Request) -> Config:
    """The config snapshot of this request: taken once, on first use, then the same object
    for the handler, its helpers and the response headers (DESIGN §4)."""
    cfg: Config | None = request.get(CONFIG_KEY)
    if cfg is None:
        cfg = request[CONFIG_KEY] = request.app[DAEMON_KEY].config()
    return cfg


async def mark_response_started(request: web.Request, _: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: from now on errors cannot change the status."""
    request[RESPONSE_STARTED_KEY] = True


async def _common_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Api-Version"] = CURRENT_API_VERSION
    experimental = request_config(request).experimental
    response.headers["Docker-Experimental"] = "true" if experimental else "false"
    response.headers["Ostype"] = "linux"
    response.headers["Server"] = SERVER_HEADER
    response.headers.setdefault("Cache-Control", "no-cache")


class Routes:
    """Registers each route twice: ``/path`` and ``/v{version}/path``; a ``GET`` route's
    quick handler, if it has one, in the application's :class:`~whaled.api.lane.Lane`."""

    def __init__(self, app: web.Application) -> None:
        self._router = app.router
        self._lane = app.get(LANE_KEY)  # none: aiohttp answers every request

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        quick: QuickHandler | None = None,
        head: bool = False,
    ) -> None:
        """``quick``: the same answer as ``handler`` for what it can answer from memory
        (``api.lane``); ``head``: ``HEAD`` is served too (by the same handlers)."""
        # dockerd's router takes any run of digits and dots after /v; the version check
        # then answers 400 for what is out of range (``/v1/``, ``/v1.2.3/``, ``/v9/``).
        for prefix in ("", r"/v{version:[0-9.]+}"):
            if method == "GET":
                self._router.add_get(prefix + path, handler, allow_head=head)
            else:
                self._router.add_route(method, prefix + path, handler)
        if quick is not None:
            if method != "GET":
                raise ValueError(f"a quick handler answers GET only, not {method} {path}")
            if self._lane is not None:
                self._lane.add(path, quick, head=head)


def build_app(
    daemon: Daemon,
    route_modules: list[Callable[[Routes], None]],
    limits: ServerLimits | None = None,
) -> web.Application:
    limits = limits or ServerLimits()
    app = web.Application(
        middlewares=[clean_path_middleware, error_middleware, version_middleware],
        # Bounds every whole-body read (``request.read()``); streamed bodies are not.
        client_max_size=limits.json_body_max,
        handler_args={"max_field_size": 65536},
    )
    app[DAEMON_KEY] = daemon
    app[LIMITS_KEY] = limits
    app[LANE_KEY] = Lane(daemon)
    app.on_response_prepare.append(mark_response_started)
    app.on_response_prepare.append(_common_headers)
    routes = Routes(app)
    for register in route_modules:
        register(routes)
    return app
