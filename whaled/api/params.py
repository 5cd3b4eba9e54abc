"""Request parameters as dockerd reads them: query booleans and integers, JSON bodies.

Shared by every router; each helper raises ``InvalidParameter`` (400) with dockerd's
wording for a bad value.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web
from multidict import MultiMapping

from whaled.api.app import read_json_body
from whaled.api.schema import Body, decode_body
from whaled.errors import InvalidParameter

_FALSE_WORDS = frozenset({"", "0", "no", "false", "none"})


class HasQuery(Protocol):
    """A request's query: aiohttp's ``web.Request`` or the quick lane's ``QuickRequest``."""

    @property
    def query(self) -> MultiMapping[str]: ...


def bool_param(request: HasQuery, key: str, default: bool = False) -> bool:
    """dockerd's ``BoolValue`` / ``BoolValueOrDefault``."""
    if key not in request.query:
        return default
    return request.query[key].strip().lower() not in _FALSE_WORDS


def int_param(request: HasQuery, key: str, default: int | None = None) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"invalid value for {key}: {raw!r}") from None


def size_param(request: web.Request, key: str) -> int:
    """A terminal dimension (``h``, ``w``): 0 when absent, never negative."""
    value = int_param(request, key, 0) or 0
    if value < 0:
        raise InvalidParameter(f"invalid value for {key}: {value}: must not be negative")
    return value


async def json_body(request: web.Request, schema: Body, *, required: bool = True) -> dict[str, Any]:
    """The request body decoded and checked against ``schema`` (canonical keys, checked types)."""
    return decode_body(await read_json_body(request), schema, required=required)
