"""Small pure helpers of the client module (the client itself is tested against a real
registry in tests/integration/distribution)."""

from __future__ import annotations

import ssl

from whaled.distribution.client import (
    RegistryClient,
    _connection_error_text,
    _content_range_start,
    _next_link,
)


def test_next_link() -> None:
    assert _next_link('</v2/x/tags/list?last=a&n=1>; rel="next"') == "/v2/x/tags/list?last=a&n=1"
    assert _next_link('<https://h/a>; rel="prev", <https://h/b>; rel="next"') == "https://h/b"
    assert _next_link(None) is None
    assert _next_link('<https://h/a>; rel="prev"') is None


def test_content_range_start() -> None:
    assert _content_range_start("bytes 100-199/200") == 100
    assert _content_range_start("bytes */200") is None
    assert _content_range_start(None) is None


def test_connection_errors_in_gos_url_error_shape() -> None:
    url = "https://127.0.0.1:1/v2/"
    assert _connection_error_text("GET", url, ConnectionRefusedError(111, "x")) == (
        'Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
    )
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    assert _connection_error_text("GET", url, wrong).endswith(
        "http: server gave HTTP response to HTTPS client"
    )


def _plan(domain: str, insecure: list[str], answers: list[str]) -> tuple[list[str], list[str]]:
    asked: list[str] = []

    def resolve(name: str) -> list[str]:
        asked.append(name)
        return answers

    client = RegistryClient.for_domain(domain, insecure_registries=insecure, resolve=resolve)
    endpoints = [f"{e.scheme}:{e.host}:{'verify' if e.verify else 'noverify'}"
                 for e in client._endpoints]  # fmt: skip
    return endpoints, asked


def test_for_domain_plans_endpoints_without_io() -> None:
    assert _plan("127.0.0.1:5000", [], []) == (
        ["https:127.0.0.1:5000:noverify", "http:127.0.0.1:5000:noverify"],
        [],
    )
    assert _plan("docker.io", ["0.0.0.0/0"], ["10.0.0.1"]) == (
        ["https:registry-1.docker.io:verify"],
        [],
    )
    assert _plan("reg.lan:5000", ["10.1.0.0/16"], ["10.1.1.1"]) == (
        ["https:reg.lan:5000:noverify", "http:reg.lan:5000:noverify"],
        ["reg.lan"],
    )
    assert _plan("reg.lan:5000", ["10.1.0.0/16"], ["192.168.0.1"]) == (
        ["https:reg.lan:5000:verify"],
        ["reg.lan"],
    )
    assert _plan("reg.lan:5000", ["reg.lan:5000"], []) == (
        ["https:reg.lan:5000:noverify", "http:reg.lan:5000:noverify"],
        [],
    )
