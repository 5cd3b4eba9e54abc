"""Timestamps of the container record, in dockerd's format (RFC 3339, nine fraction
digits, UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from whaled.runtime.backend.api import ExitStatus


def now_rfc3339() -> str:
    ns = time.time_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z"


def exit_time(status: ExitStatus) -> str:
    ts = status.exited_at.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond:06d}000Z"
