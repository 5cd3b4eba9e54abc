"""The API server's connection limits: the cap below the fd limit, the test overrides, the
gate that stops accepting at the cap."""

from __future__ import annotations

import asyncio
import logging

import pytest

from whaled.api.limits import (
    HEAD_TIMEOUT_SECONDS,
    JSON_BODY_MAX_BYTES,
    ServerLimits,
    connection_cap,
    server_limits,
)
from whaled.api.server import ConnectionGate
from whaled.errors import SystemFailure


@pytest.mark.parametrize(
    ("soft", "cap"),
    [(20000, 15000), (1024, 512), (4096, 3072), (600, 88), (100, 32), (1 << 20, 786432)],
)
def test_connection_cap_leaves_room_for_containers(soft: int, cap: int) -> None:
    assert connection_cap(soft) == cap
    if soft >= 1024:
        assert soft - connection_cap(soft) >= 512


def test_server_limits_defaults() -> None:
    limits = server_limits({}, 20000)
    assert limits == ServerLimits(max_connections=15000)
    assert limits.head_timeout == HEAD_TIMEOUT_SECONDS
    assert limits.json_body_max == JSON_BODY_MAX_BYTES


def test_server_limits_test_overrides() -> None:
    limits = server_limits(
        {
            "_WHALED_HEAD_TIMEOUT": "1.5",
            "_WHALED_BODY_TIMEOUT": "2",
            "_WHALED_MAX_CONNECTIONS": "40",
        },
        20000,
    )
    assert (limits.head_timeout, limits.body_timeout, limits.max_connections) == (1.5, 2.0, 40)


@pytest.mark.parametrize("value", ["x", "0", "-3"])
def test_server_limits_refuse_bad_overrides(value: str) -> None:
    with pytest.raises(SystemFailure, match="_WHALED_HEAD_TIMEOUT"):
        server_limits({"_WHALED_HEAD_TIMEOUT": value}, 20000)


def test_gate_waits_at_the_cap_and_opens_when_a_connection_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> list[str]:
        gate = ConnectionGate(2)
        steps: list[str] = []
        for _ in range(2):
            await asyncio.wait_for(gate.wait_for_room(), 1)
            gate.opened()
        waiter = asyncio.create_task(gate.wait_for_room())
        await asyncio.sleep(0.01)
        steps.append("waiting" if not waiter.done() else "passed")
        gate.closed()
        await asyncio.wait_for(waiter, 1)
        steps.append("passed")
        gate.opened()
        # At the cap again: one more warning would repeat within the minute: not logged.
        again = asyncio.create_task(gate.wait_for_room())
        await asyncio.sleep(0.01)
        gate.closed()
        await asyncio.wait_for(again, 1)
        return steps

    with caplog.at_level("WARNING", logger="whaled.api"):
        assert asyncio.run(scenario()) == ["waiting", "passed"]
    warnings = [r for r in caplog.records if "connection limit" in r.getMessage()]
    assert len(warnings) == 1


def _bad_request_record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("",),
        (type(exc), exc, None),
    )


def test_malformed_requests_are_one_debug_line_not_an_error_with_a_traceback() -> None:
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

    from whaled.api.server import BadRequestLogFilter

    f = BadRequestLogFilter()
    api_log = logging.getLogger("whaled.api")
    saved = api_log.level
    try:
        api_log.setLevel(logging.DEBUG)
        record = _bad_request_record(BadHttpMessage("Too many headers received"))
        assert f.filter(record)
        assert record.levelno == logging.DEBUG and record.exc_info is None
        assert record.getMessage() == "refused a malformed request: Too many headers received"
        api_log.setLevel(logging.INFO)
        assert not f.filter(_bad_request_record(LineTooLong("line", "8190")))
        # anything else aiohttp logs stays as it was
        other = _bad_request_record(RuntimeError("handler bug"))
        assert f.filter(other) and other.levelno == logging.ERROR and other.exc_info
    finally:
        api_log.setLevel(saved)
