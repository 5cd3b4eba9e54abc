"""Daemon log output in dockerd's format (logfmt text or JSON), on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from whaled.config.model import Config

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


def _stamp(created: float) -> str:
    ns = int(created * 1e9)
    seconds, nanos = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        level = _NAMES.get(record.levelno, record.levelname.lower())
        return f'time="{_stamp(record.created)}" level={level} msg={json.dumps(msg)}'


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        level = _NAMES.get(record.levelno, record.levelname.lower())
        return json.dumps({"level": level, "msg": msg, "time": _stamp(record.created)})


@dataclass(slots=True)
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Rate-limits repeated warnings and errors: of the records with the same logger, level
    and message template, at most ``burst`` pass per ``window`` seconds; the first one that
    passes after a suppression says how many were dropped. Debug and info records pass.

    Keyed by the template (``record.msg``), so "accept failed: %s" repeated with different
    arguments counts as one message. At most ``max_keys`` keys are tracked (the oldest
    windows are forgotten first), so pre-formatted messages cannot grow it without bound.
    """

    def __init__(
        self,
        *,
        window: float = 60.0,
        burst: int = 10,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._window = window
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        w = self._windows.get(key)
        dropped = 0
        if w is None or now - w.start >= self._window:
            dropped = w.suppressed if w is not None else 0
            w = _Window(start=now)
            self._windows.pop(key, None)
            self._windows[key] = w  # newest last: eviction takes the oldest window
            while len(self._windows) > self._max_keys:
                del self._windows[next(iter(self._windows))]
        if w.passed >= self._burst:
            w.suppressed += 1
            return False
        w.passed += 1
        if dropped:
            record.msg = f"{record.msg} (the same message was suppressed {dropped} times)"
        return True


#: Libraries whose debug output is their own internals (pyroute2: every netlink message,
#: several hundred lines per container start), kept out of whaled's debug log.
QUIET_LIBRARIES = ("pyroute2",)


class QuietLibrariesFilter(logging.Filter):
    """Drops the :data:`QUIET_LIBRARIES`' records below INFO at the handler: logger levels
    alone would not do, as a library may set its own when it is imported (pyroute2 does),
    and the daemon's logging is set up before its imports (``whaled.api.early``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            return True
        return not any(
            record.name == lib or record.name.startswith(lib + ".") for lib in QUIET_LIBRARIES
        )


def level_for(cfg: Config) -> int:
    return logging.DEBUG if cfg.debug else LEVELS.get(cfg.log_level, logging.INFO)


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.log_format == "json" else TextFormatter())
    handler.addFilter(QuietLibrariesFilter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_for(cfg))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def apply_level(cfg: Config) -> None:
    logging.getLogger().setLevel(level_for(cfg))
