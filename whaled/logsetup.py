"""Daemon log output in dockerd's format (logfmt text or JSON), on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time

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


def level_for(cfg: Config) -> int:
    return logging.DEBUG if cfg.debug else LEVELS.get(cfg.log_level, logging.INFO)


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if cfg.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_for(cfg))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def apply_level(cfg: Config) -> None:
    logging.getLogger().setLevel(level_for(cfg))
