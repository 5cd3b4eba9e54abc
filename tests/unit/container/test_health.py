from __future__ import annotations

from typing import Any

import pytest

from whaled.container.health import (
    DEFAULT_RETRIES,
    HealthConfig,
    go_duration,
    limit_output,
    mark_stopped,
    next_probe_delay,
    record_result,
    reset_for_start,
    timeout_output,
)
from whaled.container.model import Health
from whaled.errors import InvalidParameter

S = 1_000_000_000
MS = 1_000_000


# --- configuration ---------------------------------------------------------------------------


def test_none_and_empty_disable() -> None:
    assert HealthConfig.from_api(None) is None
    assert HealthConfig.from_api({}) is None
    assert HealthConfig.from_api({"Test": []}) is None
    assert HealthConfig.from_api({"Test": ["NONE"]}) is None


def test_unknown_type_runs_no_probe() -> None:
    assert HealthConfig.from_api({"Test": ["curl", "-f", "http://localhost"]}) is None
    assert HealthConfig.from_api({"Test": "curl -f http://localhost"}) is None


def test_cmd_and_defaults() -> None:
    cfg = HealthConfig.from_api({"Test": ["CMD", "curl", "-f", "http://x/a b"]})
    assert cfg is not None
    assert cfg.argv == ("curl", "-f", "http://x/a b")
    assert (cfg.interval_ns, cfg.timeout_ns, cfg.start_period_ns, cfg.start_interval_ns) == (
        30 * S,
        30 * S,
        0,
        5 * S,
    )
    assert cfg.retries == DEFAULT_RETRIES == 3
    assert (cfg.interval, cfg.timeout, cfg.start_period, cfg.start_interval) == (30, 30, 0, 5)


def test_cmd_shell_uses_config_shell() -> None:
    cfg = HealthConfig.from_api({"Test": ["CMD-SHELL", "exit 1"]})
    assert cfg is not None and cfg.argv == ("/bin/sh", "-c", "exit 1")
    cfg = HealthConfig.from_api({"Test": ["CMD-SHELL", "exit 1"]}, shell=["/bin/bash", "-ec"])
    assert cfg is not None and cfg.argv == ("/bin/bash", "-ec", "exit 1")


def test_explicit_values() -> None:
    cfg = HealthConfig.from_api(
        {
            "Test": ["CMD", "true"],
            "Interval": 2 * S,
            "Timeout": 500 * MS,
            "StartPeriod": 10 * S,
            "StartInterval": 1 * MS,
            "Retries": 7,
        }
    )
    assert cfg == HealthConfig(
        argv=("true",),
        interval_ns=2 * S,
        timeout_ns=500 * MS,
        start_period_ns=10 * S,
        start_interval_ns=1 * MS,
        retries=7,
    )


def test_zero_means_default() -> None:
    cfg = HealthConfig.from_api(
        {"Test": ["CMD", "true"], "Interval": 0, "Timeout": 0, "Retries": 0, "StartInterval": None}
    )
    assert cfg is not None
    assert (cfg.interval_ns, cfg.timeout_ns, cfg.start_interval_ns, cfg.retries) == (
        30 * S,
        30 * S,
        5 * S,
        3,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Interval", -10 * MS, "Interval in Healthcheck cannot be less than 1ms"),
        ("Interval", 500_000, "Interval in Healthcheck cannot be less than 1ms"),
        ("Timeout", -100 * MS, "Timeout in Healthcheck cannot be less than 1ms"),
        ("Retries", -10, "Retries in Healthcheck cannot be negative"),
        ("StartPeriod", 100, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ("StartInterval", -1, "StartInterval in Healthcheck cannot be less than 1ms"),
    ],
)
def test_validation(field: str, value: int, message: str) -> None:
    # Validated even when the healthcheck is disabled, as dockerd does at create.
    for test in (["CMD", "true"], ["NONE"]):
        with pytest.raises(InvalidParameter) as err:
            HealthConfig.from_api({"Test": test, field: value})
        assert err.value.message == message


def test_validation_order_and_types() -> None:
    with pytest.raises(InvalidParameter, match=r"^Interval"):
        HealthConfig.from_api({"Test": ["NONE"], "Interval": 1, "Timeout": 1})
    with pytest.raises(InvalidParameter):
        HealthConfig.from_api({"Test": ["CMD", "true"], "Interval": "30s"})
    with pytest.raises(InvalidParameter):
        HealthConfig.from_api({"Test": ["CMD", 1]})
    cfg = HealthConfig.from_api({"Test": ["CMD", "true"], "Interval": 2e9})
    assert cfg is not None and cfg.interval_ns == 2 * S


# --- results ---------------------------------------------------------------------------------


def probe(
    h: Health,
    code: int,
    *,
    retries: int = 3,
    start_period: bool = False,
    output: str | bytes = "out",
    n: int = 0,
) -> bool:
    return record_result(
        h,
        exit_code=code,
        output=output,
        start=f"start{n}",
        end=f"end{n}",
        retries=retries,
        in_start_period=start_period,
    )


def test_success_is_healthy_and_reports_change_once() -> None:
    h = Health()
    assert h.status == "starting"
    assert probe(h, 0) is True
    assert (h.status, h.failing_streak) == ("healthy", 0)
    assert probe(h, 0) is False
    assert h.log[-1] == {"Start": "start0", "End": "end0", "ExitCode": 0, "Output": "out"}


def test_failures_reach_unhealthy_at_retries() -> None:
    h = Health(status="healthy")
    assert probe(h, 1) is False and h.failing_streak == 1 and h.status == "healthy"
    assert probe(h, 1) is False and h.failing_streak == 2
    assert probe(h, 1) is True and h.status == "unhealthy" and h.failing_streak == 3
    assert probe(h, 1) is False and h.failing_streak == 4
    assert probe(h, 0) is True and h.status == "healthy" and h.failing_streak == 0


def test_retries_default_when_not_positive() -> None:
    h = Health(status="healthy")
    for _ in range(2):
        probe(h, 2, retries=0)
    assert h.status == "healthy"
    assert probe(h, 2, retries=0) is True and h.status == "unhealthy"


def test_start_period_failures_do_not_count_while_starting() -> None:
    h = Health()
    for i in range(10):
        assert probe(h, 1, retries=1, start_period=True, n=i) is False
    assert (h.status, h.failing_streak) == ("starting", 0)
    assert len(h.log) == 5  # still logged
    assert probe(h, 1, retries=1, start_period=False) is True
    assert h.status == "unhealthy"


def test_start_period_does_not_protect_a_healthy_container() -> None:
    h = Health()
    probe(h, 0, start_period=True)
    assert probe(h, 1, retries=1, start_period=True) is True
    assert h.status == "unhealthy" and h.failing_streak == 1


def test_starting_fails_without_start_period() -> None:
    h = Health()
    probe(h, 1)
    probe(h, 1)
    assert h.status == "starting" and h.failing_streak == 2
    assert probe(h, 1) is True and h.status == "unhealthy"


def test_log_keeps_last_five() -> None:
    h = Health()
    for i in range(8):
        probe(h, i % 2, n=i)
    assert [e["Start"] for e in h.log] == [f"start{i}" for i in range(3, 8)]


def test_output_truncated_like_dockerd() -> None:
    h = Health()
    probe(h, 0, output="x" * 4096)
    assert h.log[-1]["Output"] == "x" * 4096
    probe(h, 0, output="y" * 5000)
    assert h.log[-1]["Output"] == "y" * 4096 + "..."
    probe(h, 0, output=b"z" * 4097)
    assert h.log[-1]["Output"] == "z" * 4096 + "..."


def test_output_cut_inside_a_character() -> None:
    text = "a" * 4095 + "é" + "b"  # é is 2 bytes: the cut falls inside it
    assert limit_output(text) == "a" * 4095 + "\ufffd..."
    assert limit_output(b"ok\xff") == "ok\ufffd"


def test_timeout_result() -> None:
    assert timeout_output(30 * S) == "Health check exceeded timeout (30s)"
    assert timeout_output(500 * MS, "partial") == "Health check exceeded timeout (500ms): partial"
    h = Health(status="healthy")
    probe(h, -1, retries=1, output=timeout_output(2 * S))
    assert h.status == "unhealthy"
    assert h.log[-1]["ExitCode"] == -1
    assert h.log[-1]["Output"] == "Health check exceeded timeout (2s)"


def test_lifecycle() -> None:
    h = Health(status="unhealthy", failing_streak=4, log=[{"ExitCode": 1}])
    same = reset_for_start(h)
    assert same is h
    assert (h.status, h.failing_streak, h.log) == ("starting", 0, [{"ExitCode": 1}])
    fresh = reset_for_start(None)
    assert (fresh.status, fresh.failing_streak, fresh.log) == ("starting", 0, [])
    mark_stopped(h)
    assert h.status == "unhealthy"


# --- timing ----------------------------------------------------------------------------------


def cfg(**kw: Any) -> HealthConfig:
    c = HealthConfig.from_api({"Test": ["CMD", "true"], **kw})
    assert c is not None
    return c


def test_next_probe_delay() -> None:
    c = cfg(Interval=60 * S, StartPeriod=30 * S, StartInterval=2 * S)
    assert next_probe_delay(c, False) == 60.0
    assert next_probe_delay(c, True) == 2.0
    assert next_probe_delay(c, True, status="healthy") == 60.0
    assert next_probe_delay(c, True, status="unhealthy") == 60.0
    # Near the end of the start period the wait is cut to what is left of it.
    assert next_probe_delay(c, True, start_period_left=1.5) == 1.5
    assert next_probe_delay(c, True, start_period_left=10.0) == 2.0
    assert next_probe_delay(c, True, status="healthy", start_period_left=10.0) == 10.0
    assert next_probe_delay(cfg(), True) == 5.0  # default StartInterval


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1 * MS, "1ms"),
        (1_500_000, "1.5ms"),
        (500 * MS, "500ms"),
        (S, "1s"),
        (1_500 * MS, "1.5s"),
        (30 * S, "30s"),
        (90 * S, "1m30s"),
        (60 * S, "1m0s"),
        (3600 * S, "1h0m0s"),
        (3600 * S + 61 * S + 1, "1h1m1.000000001s"),
        (-2 * S, "-2s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text
