"""The network store keeps published ports in the exec-root: publishing rewrites neither
the fsynced record nor anything when nothing changed, and a restart reads both back."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from whaled.network.model import Endpoint, Network
from whaled.network.ports import PublishedPort
from whaled.network.store import NetworkStore

PORT = PublishedPort(proto="tcp", container_port=80, host_ip="127.0.0.1", host_port=32768)


def network() -> Network:
    ep = Endpoint(container_id="c1", endpoint_id="e1", ip="10.1.0.2", mac="02:42:0a:01:00:02")
    return Network(id="n1", name="net", subnet="10.1.0.0/24", gateway="10.1.0.1").with_endpoint(ep)


def with_ports(n: Network, *ports: PublishedPort) -> Network:
    return replace(n, endpoints={"c1": replace(n.endpoints["c1"], ports=ports)})


def test_ports_go_to_the_exec_root_and_the_record_stays(tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    store = NetworkStore(str(data), str(run))
    n = network()
    store.save(n)
    record = data / "network" / "n1.json"
    ports_file = run / "network" / "n1.ports.json"
    written = record.stat().st_mtime_ns
    os.utime(record, ns=(1, 1))

    store.save(with_ports(n, PORT))
    assert record.stat().st_mtime_ns == 1  # not rewritten
    assert json.loads(ports_file.read_text()) == {"c1": [PORT.to_json()]}
    assert json.loads(record.read_text())["endpoints"][0]["ports"] == []

    again = NetworkStore(str(data), str(run)).find("n1")
    assert again.endpoints["c1"].ports == (PORT,)

    store.save(n)  # unpublished
    assert not ports_file.exists() and record.stat().st_mtime_ns == 1
    assert NetworkStore(str(data), str(run)).find("n1").endpoints["c1"].ports == ()
    assert written > 1


def test_an_address_change_rewrites_the_record(tmp_path: Path) -> None:
    store = NetworkStore(str(tmp_path / "data"), str(tmp_path / "run"))
    store.save(network())
    store.save(network().without("c1"))
    doc = json.loads((tmp_path / "data" / "network" / "n1.json").read_text())
    assert doc["endpoints"] == []


def test_a_record_with_ports_inside_is_read_and_rewritten_without_them(tmp_path: Path) -> None:
    NetworkStore(str(tmp_path / "data")).save(with_ports(network(), PORT))  # the old layout
    store = NetworkStore(str(tmp_path / "data"), str(tmp_path / "run"))
    n = store.find("n1")
    assert n.endpoints["c1"].ports == (PORT,)
    store.save(n)
    doc = json.loads((tmp_path / "data" / "network" / "n1.json").read_text())
    assert doc["endpoints"][0]["ports"] == []
    assert (tmp_path / "run" / "network" / "n1.ports.json").exists()


def test_unreadable_ports_are_dropped(tmp_path: Path) -> None:
    NetworkStore(str(tmp_path / "data"), str(tmp_path / "run")).save(network())
    (tmp_path / "run" / "network" / "n1.ports.json").write_text("{not json")
    n = NetworkStore(str(tmp_path / "data"), str(tmp_path / "run")).find("n1")
    assert n.endpoints["c1"].ports == ()


def test_a_later_save_is_seen_at_once_and_on_disk_after_flush(tmp_path: Path) -> None:
    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    store = NetworkStore(data, run)
    store.save(network())
    store.save(network().without("c1"), later=True)
    assert store.find("n1").endpoints == {}
    store.flush()
    assert NetworkStore(data, run).find("n1").endpoints == {}
    # a later save overtaken by a plain one: the newest is what stays
    store.save(network(), later=True)
    store.save(with_ports(network(), PORT))
    store.flush()
    assert NetworkStore(data, run).find("n1").endpoints["c1"].ports == (PORT,)
    # deleted before its write: nothing comes back
    store.save(network().without("c1"), later=True)
    store.delete("n1")
    store.flush()
    assert os.listdir(os.path.join(data, "network")) == []
