"""``whaled reload``: validate the config file, SIGHUP the running daemon, report the outcome.

The outcome comes from the daemon itself: the command subscribes to the daemon's event
stream (``type=daemon``) *before* sending SIGHUP, then waits for the ``reload`` or
``reload_failed`` event, so it reports exactly what the daemon did.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from whaled.config.hosts import parse_host
from whaled.config.loader import ConfigSource, load
from whaled.config.model import DEFAULT_CONFIG_FILE, DEFAULT_HOST
from whaled.config.source import read_config_file
from whaled.daemon.reload import RELOAD_ACTION, RELOAD_FAILED_ACTION
from whaled.errors import ConfigError
from whaled.osutil.pidfile import read_pid


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("whaled", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="whaled reload", description=__doc__)
    p.add_argument("--config-file", default=DEFAULT_CONFIG_FILE)
    p.add_argument("-H", "--host", default=DEFAULT_HOST, help="the daemon's unix socket")
    p.add_argument("-p", "--pidfile", default="/run/whaled.pid")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the outcome")
    return p


def _describe(attrs: dict[str, Any]) -> str:
    changed = [k for k in attrs.get("changed", "").split(",") if k]
    restart = [k for k in attrs.get("restart-required", "").split(",") if k]
    lines = ["Reloaded configuration."]
    lines.append("changed: " + (", ".join(f"{k}={attrs.get(k, '')}" for k in changed) or "nothing"))
    if restart:
        lines.append("changed in the file but only applied at restart: " + ", ".join(restart))
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    ns = _parser().parse_args(list(argv))
    try:
        text = read_config_file(ns.config_file, explicit=True)
        # Syntax, keys and value types only: the cross-checks (a default-runtime that a
        # start-up flag defines, flag/file conflicts, paths) need the daemon's flags, so the
        # daemon makes them and its ``reload_failed`` event says why.
        load(ConfigSource(flags={}, file_path=ns.config_file, file_text=text))
    except ConfigError as e:
        print(f"reload refused, the file is invalid: {e}", file=sys.stderr)
        return 1
    pid = read_pid(ns.pidfile)
    if pid is None:
        print(f"whaled is not running: no PID in {ns.pidfile}", file=sys.stderr)
        return 1
    address = parse_host(ns.host)
    if address.proto != "unix":
        print("whaled reload needs the daemon's unix socket (-H unix://PATH)", file=sys.stderr)
        return 1
    filters = quote(json.dumps({"type": ["daemon"]}))
    conn = _UnixConnection(address.path, timeout=ns.timeout)
    try:
        conn.request("GET", f"/events?filters={filters}")
        response = conn.getresponse()
        if response.status != 200:
            print(f"cannot watch the daemon's events: HTTP {response.status}", file=sys.stderr)
            return 1
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + ns.timeout
        while time.monotonic() < deadline:
            line = response.readline()
            if not line:
                break
            event = json.loads(line)
            action = event.get("Action")
            attrs = event.get("Actor", {}).get("Attributes", {})
            if action == RELOAD_ACTION:
                print(_describe(attrs))
                return 0
            if action == RELOAD_FAILED_ACTION:
                print(f"reload failed, nothing changed: {attrs.get('error', '')}", file=sys.stderr)
                return 1
    except (OSError, http.client.HTTPException) as e:
        print(f"cannot reach whaled at {ns.host}: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print("no reload outcome from the daemon in time", file=sys.stderr)
    return 1
