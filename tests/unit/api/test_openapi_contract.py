"""whaled/api/openapi.yaml and the router table describe the same routes.

The app is built from the real ``register`` functions of every router (the list wiring.py
passes), with no daemon behind it: registering routes does no I/O. Each route is served
with and without the ``/v{version}`` prefix; the document lists the prefixed form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.support.openapi_check import OPENAPI_PATH, load_document
from whaled.api.app import Routes
from whaled.api.routers import (
    build,
    containers,
    distribution,
    events,
    exec,
    images,
    networks,
    swarm,
    system,
    volumes,
)

ROUTE_MODULES: list[Callable[[Routes], None]] = [
    system.register,
    events.register,
    images.register,
    distribution.register,
    volumes.register,
    networks.register,
    containers.register,
    exec.register,
    build.register,
    swarm.register,
]
PREFIX = "/v{version}"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Route = tuple[str, str]


def router_table() -> set[Route]:
    """(METHOD, path template) of every route the app serves, regexes dropped."""
    app = web.Application()
    routes = Routes(app)
    for register in ROUTE_MODULES:
        register(routes)
    return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}


def document_table(doc: dict[str, Any]) -> set[Route]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def diff_message(only_doc: set[Route], only_app: set[Route]) -> str:
    lines = []
    for method, path in sorted(only_doc, key=lambda r: (r[1], r[0])):
        lines.append(f"  in openapi.yaml, not served:  {method} {path}")
    for method, path in sorted(only_app, key=lambda r: (r[1], r[0])):
        lines.append(f"  served, not in openapi.yaml:  {method} {path}")
    return "openapi.yaml and the router table differ:\n" + "\n".join(lines)


def test_the_wiring_registers_the_same_router_modules() -> None:
    """The list above is the one wiring.py builds the app from (a new router module must be
    added to both, or this test would check a partial table)."""
    with open("whaled/wiring.py", encoding="utf-8") as f:
        wiring = f.read()
    registered = set(re.findall(r"(\w+)_routes\.register", wiring))
    here = {register.__module__.rsplit(".", 1)[1] for register in ROUTE_MODULES}
    assert registered == here


def test_every_route_is_served_with_and_without_the_version_prefix() -> None:
    table = router_table()
    prefixed = {(m, p[len(PREFIX) :]) for m, p in table if p.startswith(PREFIX + "/")}
    plain = {(m, p) for m, p in table if not p.startswith(PREFIX + "/")}
    assert prefixed == plain


def test_the_document_lists_exactly_the_routes_the_app_serves() -> None:
    served = {(m, p) for m, p in router_table() if p.startswith(PREFIX + "/")}
    documented = document_table(load_document())
    only_doc, only_app = documented - served, served - documented
    assert not only_doc and not only_app, diff_message(only_doc, only_app)


def test_the_diff_names_both_directions() -> None:
    """The failure message says which side each route is missing from."""
    message = diff_message({("GET", "/v{version}/a")}, {("POST", "/v{version}/b")})
    assert "in openapi.yaml, not served:  GET /v{version}/a" in message
    assert "served, not in openapi.yaml:  POST /v{version}/b" in message


def test_every_path_parameter_is_declared() -> None:
    """Each ``{name}`` in a path is a required path parameter of each of its operations,
    and each declared path parameter appears in the path."""
    doc = load_document()
    problems = []
    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            declared = {
                p["name"]
                for p in (resolve(doc, p) for p in op.get("parameters", []))
                if p["in"] == "path" and p.get("required")
            }
            if declared != in_path:
                problems.append(f"{method.upper()} {path}: declares {sorted(declared)}")
    assert not problems, "\n".join(problems)


def test_every_operation_has_a_unique_id_and_an_error_response() -> None:
    doc = load_document()
    ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                ids.append(op["operationId"])
                assert "default" in op["responses"], f"{method.upper()} {path}"
    assert len(ids) == len(set(ids))


def test_every_reference_resolves() -> None:
    doc = load_document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        resolve(doc, {"$ref": ref})


def test_the_document_is_plain_yaml() -> None:
    """Loaded with PyYAML's safe loader (no tags), as schemathesis loads it."""
    with open(OPENAPI_PATH, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == "1.45"


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    if not ref.startswith("#/"):
        pytest.fail(f"only local references are used: {ref}")
    target: Any = doc
    for part in ref[2:].split("/"):
        if part not in target:
            pytest.fail(f"unresolved reference {ref}")
        target = target[part]
    assert isinstance(target, dict)
    return target
