"""Healthchecks: configuration, probe results → Health state, probe timing (pure).

The rules are dockerd's, checked against moby's ``daemon/health.go``, ``container/health.go``,
``daemon/container.go`` (``validateHealthCheck``) and the Engine API docs (HealthConfig):

Configuration (:meth:`HealthConfig.from_api`, over ``Config.Healthcheck`` after the image's
healthcheck has been merged in):

- Validation, whatever ``Test`` says (InvalidParameter, HTTP 400, in this order): ``Interval``,
  ``Timeout``, ``StartPeriod``, ``StartInterval`` are nanoseconds, 0 meaning "default", and
  otherwise must be at least 1 ms (``"Interval in Healthcheck cannot be less than 1ms"`` — a
  negative value gets the same message); ``"Retries in Healthcheck cannot be negative"``.
- ``Test``: ``[]`` / missing → no healthcheck (the image's was already merged: nothing to
  inherit); ``["NONE"]`` → disabled; ``["CMD", arg…]`` → the args exec'd directly;
  ``["CMD-SHELL", cmd]`` → ``Config.Shell`` (default ``/bin/sh -c``) + ``cmd``. Any other
  first element (a bare command without prefix included) is an unknown probe type: dockerd
  accepts the container, logs "Unknown healthcheck type" and runs no probe — so ``None``
  here. A JSON string is taken as a one-element list (Go's ``StrSlice``).
- Defaults: Interval 30 s, Timeout 30 s, StartPeriod 0, StartInterval 5 s, Retries 3 (a
  value ≤ 0 means the default).

Results (:func:`record_result`, dockerd's ``handleProbeResult``):

- Every result is appended to the log, which keeps the last 5 entries
  (``{"Start", "End", "ExitCode", "Output"}``); the output keeps its first 4096 bytes, with
  ``...`` appended when more was written.
- Exit code 0 → ``healthy``, failing streak 0.
- Anything else (a timeout is exit code -1 with output ``Health check exceeded timeout (30s)``
  — see :func:`timeout_output`; a probe that could not run is -1 with the error) is a failure.
  While the status is still ``starting`` (no success yet) and the probe started within the
  start period, the failure is logged but not counted; otherwise the streak grows and the
  status turns ``unhealthy`` once the streak reaches Retries. A container that has been
  healthy is not protected by the start period any more.
- The daemon emits ``health_status: <status>`` when the status changed (the return value).

Lifecycle (dockerd's ``initHealthMonitor`` / ``CloseMonitorChannel``): each start resets the
status to ``starting`` and the streak to 0 but keeps the log (:func:`reset_for_start`); when
the monitor stops (the container stopped or died) the status becomes ``unhealthy``
(:func:`mark_stopped`).

Timing (:func:`next_probe_delay`, dockerd's ``monitor``): the first probe runs one delay after
the start, and each next one a delay after the previous one finished. The delay is the
StartInterval while within the start period and still ``starting``, the Interval otherwise;
within the start period it is cut to what is left of it, so the first regular probe runs when
the start period ends (moby #52317).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whaled.container.model import Health
from whaled.errors import InvalidParameter

NS_PER_SECOND = 1_000_000_000
MINIMUM_DURATION_NS = 1_000_000  # 1 ms (containertypes.MinimumDuration)

DEFAULT_INTERVAL_NS = 30 * NS_PER_SECOND
DEFAULT_TIMEOUT_NS = 30 * NS_PER_SECOND
DEFAULT_START_PERIOD_NS = 0
DEFAULT_START_INTERVAL_NS = 5 * NS_PER_SECOND
DEFAULT_RETRIES = 3

MAX_LOG_ENTRIES = 5
MAX_OUTPUT_BYTES = 4096

DEFAULT_SHELL = ("/bin/sh", "-c")

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """An enabled healthcheck with defaults applied (durations in nanoseconds)."""

    argv: tuple[str, ...]  # the probe's command line, run as an exec in the container
    interval_ns: int = DEFAULT_INTERVAL_NS
    timeout_ns: int = DEFAULT_TIMEOUT_NS
    start_period_ns: int = DEFAULT_START_PERIOD_NS
    start_interval_ns: int = DEFAULT_START_INTERVAL_NS
    retries: int = DEFAULT_RETRIES

    @property
    def interval(self) -> float:
        return self.interval_ns / NS_PER_SECOND

    @property
    def timeout(self) -> float:
        return self.timeout_ns / NS_PER_SECOND

    @property
    def start_period(self) -> float:
        return self.start_period_ns / NS_PER_SECOND

    @property
    def start_interval(self) -> float:
        return self.start_interval_ns / NS_PER_SECOND

    @staticmethod
    def from_api(
        healthcheck: Mapping[str, Any] | None, *, shell: Sequence[str] | None = None
    ) -> HealthConfig | None:
        """The healthcheck to run for ``Config.Healthcheck`` (``None``: none to run).
        ``shell`` is ``Config.Shell``. Raises InvalidParameter like dockerd's create."""
        if healthcheck is None:
            return None
        validate_healthcheck(healthcheck)
        test = _test(healthcheck.get("Test"))
        if not test:
            return None
        kind, args = test[0], test[1:]
        if kind == "CMD":
            argv = tuple(args)
        elif kind == "CMD-SHELL":
            argv = (*(shell or DEFAULT_SHELL), *args)
        else:  # "NONE", or an unknown type (dockerd: warning, no probe)
            return None
        return HealthConfig(
            argv=argv,
            interval_ns=_duration(healthcheck, "Interval") or DEFAULT_INTERVAL_NS,
            timeout_ns=_duration(healthcheck, "Timeout") or DEFAULT_TIMEOUT_NS,
            start_period_ns=_duration(healthcheck, "StartPeriod") or DEFAULT_START_PERIOD_NS,
            start_interval_ns=(
                _duration(healthcheck, "StartInterval") or DEFAULT_START_INTERVAL_NS
            ),
            retries=_retries(healthcheck) or DEFAULT_RETRIES,
        )


def _test(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter("Healthcheck.Test must be a list of strings")
    return list(value)


def _integer(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"Healthcheck.{key} must be an integer")
    return value


def _duration(body: Mapping[str, Any], key: str) -> int:
    return _integer(body, key)


def _retries(body: Mapping[str, Any]) -> int:
    return max(_integer(body, "Retries"), 0)


def validate_healthcheck(healthcheck: Mapping[str, Any]) -> None:
    """dockerd's ``validateHealthCheck`` (InvalidParameter), for any ``Test``."""
    _test(healthcheck.get("Test"))
    for key in ("Interval", "Timeout", "Retries", "StartPeriod", "StartInterval"):
        value = _integer(healthcheck, key)
        if key == "Retries":
            if value < 0:
                raise InvalidParameter("Retries in Healthcheck cannot be negative")
        elif value != 0 and value < MINIMUM_DURATION_NS:
            raise InvalidParameter(
                f"{key} in Healthcheck cannot be less than {go_duration(MINIMUM_DURATION_NS)}"
            )


# --------------------------------------------------------------------------- results


def limit_output(output: str | bytes) -> str:
    """dockerd's probe output buffer: the first 4096 bytes, ``...`` appended if cut (a
    character cut in half, like invalid UTF-8, becomes U+FFFD as Go's JSON encoder does)."""
    data = output.encode("utf-8", "surrogateescape") if isinstance(output, str) else output
    if len(data) <= MAX_OUTPUT_BYTES:
        return output if isinstance(output, str) else data.decode("utf-8", "replace")
    return data[:MAX_OUTPUT_BYTES].decode("utf-8", "replace") + "..."


def timeout_output(timeout_ns: int, output: str = "") -> str:
    """The Output recorded (with exit code -1) for a probe killed at its timeout."""
    message = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
    return f"{message}: {output}" if output else message


def record_result(
    health: Health,
    *,
    exit_code: int,
    output: str | bytes,
    start: str,
    end: str,
    retries: int,
    in_start_period: bool,
) -> bool:
    """Apply one probe result to ``health`` (mutated); True when its status changed.

    ``in_start_period``: the probe *started* less than StartPeriod after the container did.
    ``retries`` ≤ 0 means the default (3).
    """
    if retries <= 0:
        retries = DEFAULT_RETRIES
    old_status = health.status
    entry = {"Start": start, "End": end, "ExitCode": exit_code, "Output": limit_output(output)}
    health.log = [*health.log, entry][-MAX_LOG_ENTRIES:]
    if exit_code == 0:
        health.failing_streak = 0
        health.status = HEALTHY
    elif not (health.status == STARTING and in_start_period):
        health.failing_streak += 1
        if health.failing_streak >= retries:
            health.status = UNHEALTHY
    return health.status != old_status


def reset_for_start(health: Health | None) -> Health:
    """The Health of a container being started: ``starting``, streak 0, log kept."""
    if health is None:
        return Health(status=STARTING)
    health.status = STARTING
    health.failing_streak = 0
    return health


def mark_stopped(health: Health) -> None:
    """The monitor stopped (container stopped/died): dockerd reports ``unhealthy``."""
    health.status = UNHEALTHY


# --------------------------------------------------------------------------- timing


def next_probe_delay(
    cfg: HealthConfig,
    in_start_period: bool,
    *,
    status: str = STARTING,
    start_period_left: float | None = None,
) -> float:
    """Seconds until the next probe. ``in_start_period``: less than StartPeriod has passed
    since the container started; ``start_period_left``: how much of it is left (seconds), to
    wake up when it ends; ``status``: the current health status."""
    if not in_start_period:
        return cfg.interval
    delay = cfg.start_interval if status == STARTING else cfg.interval
    if start_period_left is not None and 0 <= start_period_left < delay:
        return start_period_left
    return delay


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``30s``, ``1m30s``, ``1h0m0s``, ``1.5s``, ``1ms``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_decimal(u, 1_000)}µs"
    if u < NS_PER_SECOND:
        return f"{sign}{_decimal(u, 1_000_000)}ms"
    minutes, rest = divmod(u, 60 * NS_PER_SECOND)
    hours, minutes = divmod(minutes, 60)
    text = f"{_decimal(rest, NS_PER_SECOND)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")
