"""Networks on disk: ``<data-root>/network/<id>.json``, one atomic file per network (its
IPAM state — the endpoints and their addresses — inside it), loaded at start."""

from __future__ import annotations

import json
import logging
import os
import threading

from whaled.errors import NotFound
from whaled.network.model import Network
from whaled.osutil.atomic import atomic_write_json
from whaled.osutil.tree import sweep

log = logging.getLogger(__name__)


class NoSuchNetwork(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"network {name} not found")


class NetworkStore:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.join(data_root, "network")
        os.makedirs(self.root, 0o700, exist_ok=True)
        sweep(self.root)
        self._lock = threading.RLock()
        self._networks: dict[str, Network] = {}
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.root, name), encoding="utf-8") as f:
                    n = Network.from_json(json.load(f))
            except (OSError, ValueError, KeyError) as e:
                log.warning("network record %s unreadable (%s): left alone", name, e)
                continue
            self._networks[n.id] = n

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

    def save(self, n: Network) -> None:
        with self._lock:
            atomic_write_json(os.path.join(self.root, n.id + ".json"), n.to_json(), mode=0o600)
            self._networks[n.id] = n

    def delete(self, network_id: str) -> None:
        with self._lock:
            try:
                os.unlink(os.path.join(self.root, network_id + ".json"))
            except FileNotFoundError:
                pass
            self._networks.pop(network_id, None)
