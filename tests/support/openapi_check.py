"""Check whaled's answers against whaled/api/openapi.yaml.

``check_response(method, path, status, content_type, body)`` finds the documented operation
for a request path (with or without the ``/vX.Y`` prefix, query ignored), picks the response
documented for the status (else ``default``) and validates a JSON body against its schema
with jsonschema_rs (OpenAPI 3.1 schemas are JSON Schema 2020-12). A response documented as
``x-stream: ndjson`` is validated line by line. It returns the problems found, empty when the
answer fits; ``assert_conforms`` raises with them.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import yaml

OPENAPI_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "whaled",
    "api",
    "openapi.yaml",
)
PREFIX = "/v{version}"
#: Path parameters whose values may contain slashes (aiohttp routes them as ``{name:.*}``).
SLASHED_PARAMS = frozenset({"name"})
_VERSION_RE = re.compile(r"^/v[0-9.]+(?=/)")


@functools.cache
def load_document() -> dict[str, Any]:
    with open(OPENAPI_PATH, encoding="utf-8") as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


@dataclass(frozen=True, slots=True)
class _Template:
    path: str
    regex: re.Pattern[str]
    literal_chars: int


@functools.cache
def _templates() -> tuple[_Template, ...]:
    out = []
    for path in load_document()["paths"]:
        bare = path[len(PREFIX) :]
        pattern = ""
        for part in re.split(r"({\w+})", bare):
            if part.startswith("{"):
                name = part[1:-1]
                pattern += "(.+)" if name in SLASHED_PARAMS else "([^/]+)"
            else:
                pattern += re.escape(part)
        literal = len(re.sub(r"{\w+}", "", bare))
        out.append(_Template(path, re.compile(pattern + "$"), literal))
    # The most literal template wins (``/images/json`` over ``/images/{name}``).
    return tuple(sorted(out, key=lambda t: -t.literal_chars))


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """(documented path, operation) for a request, or None when nothing documents it."""
    bare = _VERSION_RE.sub("", path.split("?", 1)[0])
    paths = load_document()["paths"]
    for template in _templates():
        if template.regex.match(bare):
            op = paths[template.path].get(method.lower())
            if op is not None:
                return template.path, op
    return None


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    doc = load_document()
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


@functools.cache
def _validator(schema_json: str) -> Any:
    root = {"components": load_document()["components"], **json.loads(schema_json)}
    return jsonschema_rs.Draft202012Validator(root)


def check_response(
    method: str, path: str, status: int, content_type: str, body: bytes
) -> list[str]:
    """What is wrong with this answer according to the document (empty: nothing)."""
    found = find_operation(method, path)
    if found is None:
        # What no route serves (``/vKV/_ping``: not a version dockerd's router takes) is
        # the router's 404 or 405, with the usual error body.
        if status not in (404, 405):
            return [f"{method} {path}: no documented operation, yet status {status}"]
        if method.upper() == "HEAD":
            return []
        return _check_json(
            f"{method} {path} → {status}",
            {"$ref": "#/components/schemas/ErrorResponse"},
            content_type,
            [body],
        )
    template, op = found
    where = f"{method} {template} → {status}"
    responses = op["responses"]
    if str(status) in responses:
        response = _resolve(responses[str(status)])
    elif "default" in responses and (status >= 400 or status == 304):
        response = _resolve(responses["default"])
    else:
        return [f"{where}: status not documented (documented: {sorted(responses)})"]
    content = response.get("content")
    if not content or method.upper() == "HEAD" or status == 304:
        return []
    media = content_type.split(";", 1)[0].strip().lower()
    if not media and not body and "application/json" not in content:
        return []  # a stream that carried nothing (exec start with Detach: an empty 200)
    if media not in content:
        return [f"{where}: content type {media!r} not documented ({sorted(content)})"]
    schema = content[media].get("schema")
    if schema is None or media != "application/json":
        return []
    if response.get("x-stream") == "ndjson":
        lines = [line for line in body.split(b"\n") if line.strip()]
    else:
        lines = [body]
    return _check_json(where, schema, content_type, lines)


def _check_json(
    where: str, schema: dict[str, Any], content_type: str, lines: list[bytes]
) -> list[str]:
    if not content_type.lower().startswith("application/json"):
        return [f"{where}: content type {content_type!r}, expected application/json"]
    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError as e:
            problems.append(f"{where}: not JSON ({e}): {line[:200]!r}")
            continue
        for error in validator.iter_errors(value):
            at = "/".join(str(p) for p in error.instance_path)
            problems.append(f"{where}: at /{at}: {error.message}")
    return problems


def is_stream(method: str, path: str, status: int) -> bool:
    """Whether the documented answer is a stream (``x-stream``, or not JSON at all): its
    body cannot be read whole without ending the stream first."""
    found = find_operation(method, path)
    if found is None:
        return False
    response = found[1]["responses"].get(str(status))
    if response is None:
        return False
    response = _resolve(response)
    content = response.get("content") or {}
    return "x-stream" in response or (bool(content) and "application/json" not in content)


def assert_conforms(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    problems = check_response(method, path, status, content_type, body)
    assert not problems, "\n".join(problems[:20])
