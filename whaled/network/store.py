"""Networks on disk: ``<data-root>/network/<id>.json``, one atomic (fsynced) file per network
(its IPAM state — the endpoints and their addresses — inside it), loaded at start.

The ports a running container publishes are runtime state: they live in
``<exec-root>/network/<id>.ports.json``, replaced without fsync (gone with a reboot, as the
containers are), so publishing and unpublishing never rewrite the record. A save writes only
the part that changed.

``save(n, later=True)`` (a released address) changes the store at once and writes the
record from a background thread moments later: a daemon killed before that leaves an
endpoint of a removed container, which the start's ``drop_orphans`` frees."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import replace
from typing import Any

from whaled.errors import NotFound
from whaled.network.model import Network
from whaled.network.ports import PublishedPort
from whaled.osutil.atomic import atomic_write_json, replace_file
from whaled.osutil.tree import sweep

log = logging.getLogger(__name__)


class NoSuchNetwork(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


def _record(n: Network) -> Network:
    """``n`` without its endpoints' published ports."""
    if not any(ep.ports for ep in n.endpoints.values()):
        return n
    return replace(n, endpoints={k: replace(ep, ports=()) for k, ep in n.endpoints.items()})


def _ports(n: Network) -> dict[str, list[dict[str, Any]]]:
    return {k: [p.to_json() for p in ep.ports] for k, ep in n.endpoints.items() if ep.ports}


class NetworkStore:
    def __init__(self, data_root: str, run_root: str | None = None) -> None:
        """``run_root`` (the exec-root): where published ports are kept; without it they
        are saved in the records."""
        self.root = os.path.join(data_root, "network")
        self._run = os.path.join(run_root, "network") if run_root else None
        os.makedirs(self.root, 0o700, exist_ok=True)
        sweep(self.root)
        if self._run:
            os.makedirs(self._run, 0o700, exist_ok=True)
        self._lock = threading.RLock()
        self._networks: dict[str, Network] = {}
        #: records written with ports inside (before they moved to the exec-root)
        self._rewrite: set[str] = set()
        #: what the files hold, by network ID (only while holding ``_writing``)
        self._on_disk: dict[str, Network] = {}
        self._writing = threading.Lock()  # taken after ``_lock`` where both are held
        self._dirty: set[str] = set()  # saved with ``later``, not written yet
        self._flusher: threading.Thread | None = None
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.root, name), encoding="utf-8") as f:
                    n = Network.from_json(json.load(f))
            except (OSError, ValueError, KeyError) as e:
                log.warning("network record %s unreadable (%s): left alone", name, e)
                continue
            if self._run and _record(n) != n:
                self._rewrite.add(n.id)
            n = self._with_ports(n)
            self._networks[n.id] = self._on_disk[n.id] = n

    def _ports_path(self, network_id: str) -> str | None:
        return os.path.join(self._run, network_id + ".ports.json") if self._run else None

    def _with_ports(self, n: Network) -> Network:
        path = self._ports_path(n.id)
        if path is None:
            return n
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            ports = {
                str(k): tuple(PublishedPort.from_json(p) for p in v) for k, v in doc.items()
            }
        except FileNotFoundError:
            return n
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("published ports of network %s unreadable (%s): dropped", n.id, e)
            return n
        endpoints = {
            k: replace(ep, ports=ports[k]) if k in ports else ep for k, ep in n.endpoints.items()
        }
        return replace(n, endpoints=endpoints)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def all(self) -> list[Network]:
        with self._lock:
            return sorted(self._networks.values(), key=lambda n: (n.name, n.id))

    def find(self, ref: str) -> Network:
        """By full ID, exact name, or unique ID prefix (dockerd's order)."""
        with self._lock:
            if ref in self._networks:
                return self._networks[ref]
            by_name = [n for n in self._networks.values() if n.name == ref]
            if by_name:
                return by_name[0]
            by_prefix = [n for n in self._networks.values() if n.id.startswith(ref)]
            if len(by_prefix) == 1 and ref:
                return by_prefix[0]
        raise NoSuchNetwork(ref)

    def save(self, n: Network, *, later: bool = False) -> None:
        """``n`` replaces the network's record; on disk before returning, or with
        ``later`` from a background thread (see the module's notes)."""
        with self._lock:
            self._networks[n.id] = n
            if later:
                self._dirty.add(n.id)
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush, name="network-store", daemon=True
                    )
                    self._flusher.start()
                return
            self._dirty.discard(n.id)
            with self._writing:
                self._write(n)

    def flush(self) -> None:
        """Blocking: every ``later`` save is on disk (daemon stop)."""
        while (flusher := self._flusher) is not None:
            flusher.join()

    def _flush(self) -> None:
        while True:
            with self._lock:
                if not self._dirty:
                    self._flusher = None
                    return
                n = self._networks.get(self._dirty.pop())
            if n is None:
                continue
            with self._writing:
                if self._networks.get(n.id) is not n:
                    continue  # saved again since, or deleted: that wrote or will write
                try:
                    self._write(n)
                except OSError as e:
                    log.error("network %s not saved: %s", n.name, e)

    def _write(self, n: Network) -> None:
        """The files of ``n``, those parts that differ from what is there (holding
        ``_writing``)."""
        before = self._on_disk.get(n.id)
        ports_path = self._ports_path(n.id)
        if ports_path is None:
            atomic_write_json(self._record_path(n.id), n.to_json(), mode=0o600)
            self._on_disk[n.id] = n
            return
        whole = n.id in self._rewrite
        record = _record(n)
        if whole or before is None or _record(before) != record:
            atomic_write_json(self._record_path(n.id), record.to_json(), mode=0o600)
        ports = _ports(n)
        if whole or before is None or _ports(before) != ports:
            if ports:
                replace_file(ports_path, json.dumps(ports).encode(), mode=0o600)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(ports_path)
        self._rewrite.discard(n.id)
        self._on_disk[n.id] = n

    def _record_path(self, network_id: str) -> str:
        return os.path.join(self.root, network_id + ".json")

    def delete(self, network_id: str) -> None:
        with self._lock:
            self._networks.pop(network_id, None)
            self._dirty.discard(network_id)
            with self._writing:
                for path in (self._record_path(network_id), self._ports_path(network_id)):
                    if path is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
                self._on_disk.pop(network_id, None)
