"""The integration scaffolding itself: daemons start, answer, stop and leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import WhaledFactory
from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import (
    REPO_ROOT,
    WhaledProcess,
    WhaledStartError,
    all_processes,
    mounts_under,
    proc_cmdline,
    processes_referencing,
)


def _assert_gone(pid: int, root: str) -> None:
    """Nothing of the daemon that lived at ``pid`` with temp root ``root`` is left."""
    # The PID may have been reused by now: it must at least not be a process of ours.
    assert not any(root in arg for arg in proc_cmdline(pid)), f"pid {pid} still alive"
    assert processes_referencing(root) == []
    assert mounts_under(root) == []
    assert not os.path.exists(root)


def _wait_for_child(pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in all_processes().values():
            if p.ppid == pid:
                return p.pid
        time.sleep(0.02)
    raise AssertionError(f"process {pid} started no child")


def test_fixture_daemon_answers(whaled: WhaledProcess, docker_client: Any) -> None:
    assert whaled.running
    assert docker_client.ping() is True
    status, headers, body = whaled.request("GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["Api-Version"]
    assert whaled.url == f"unix://{whaled.root}/whaled.sock"
    assert len(whaled.sock.encode()) < 108
    assert whaled.api().ping() is True


def test_docker_cli_reaches_the_daemon(whaled: WhaledProcess, docker_cli: DockerCLI) -> None:
    out = docker_cli.run("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    status, headers, _ = whaled.request("GET", "/_ping")
    assert status == 200
    assert out == headers["Api-Version"]
    assert not os.path.exists(os.path.join(docker_cli.config_dir, "contexts"))


@pytest.mark.whaled_config({"debug": True})
def test_config_marker_writes_daemon_json(whaled: WhaledProcess) -> None:
    with open(whaled.config_path) as f:
        assert json.load(f) == {"debug": True, **_own_bridge(whaled)}
    assert whaled.request("GET", "/_ping")[0] == 200


@pytest.mark.parametrize("whaled", [{"labels": ["scaffold=yes"]}], indirect=True)
def test_indirect_param_writes_daemon_json(whaled: WhaledProcess) -> None:
    with open(whaled.config_path) as f:
        assert json.load(f) == {"labels": ["scaffold=yes"], **_own_bridge(whaled)}


def _own_bridge(whaled: WhaledProcess) -> dict[str, str]:
    """What every test daemon's daemon.json gets besides the test's keys: a default bridge
    of its own (never the host-wide whaled0)."""
    return {"bridge": whaled.bridge_name, "bip": whaled.bridge_bip}


def test_two_daemons_at_once(whaled_factory: WhaledFactory) -> None:
    a = whaled_factory()
    b = whaled_factory()
    assert a.sock != b.sock and a.root != b.root and a.pid != b.pid
    assert a.client().ping() is True
    assert b.client().ping() is True
    assert a.stop() == 0
    assert not a.running
    assert b.client().ping() is True


def test_restart_keeps_roots(whaled: WhaledProcess) -> None:
    first_pid = whaled.pid
    whaled.restart()
    assert whaled.pid != first_pid
    assert whaled.request("GET", "/_ping")[:3:2] == (200, b"OK")
    assert "--- whaled_proc: start #2 ---" in whaled.log_text()


def test_failed_start_reports_log(whaled_factory: WhaledFactory) -> None:
    with pytest.raises(WhaledStartError, match="exited with code"):
        whaled_factory({"no-such-option": True})


def test_cleanup_undoes_mounts_and_strays(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("keep me")
    w = WhaledProcess()
    try:
        w.start()
        w.wait_ready()
        root = w.root
        pid = w.pid
        assert pid is not None
        # Mounts like a daemon's: nested, stacked, and a bind of a directory outside the root.
        nested = os.path.join(root, "data", "m1")
        stacked = os.path.join(root, "exec", "m2")
        bound = os.path.join(root, "data", "bind")
        for d in (nested, stacked, bound):
            os.makedirs(d)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", nested], check=True)
        os.makedirs(os.path.join(nested, "inner"))
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(nested, "inner")], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", stacked], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", stacked], check=True)
        subprocess.run(["mount", "--bind", str(outside), bound], check=True)
        assert len(mounts_under(root)) == 5
        # A process left behind that names the root (as conmon would), with a child.
        stray = subprocess.Popen(
            ["/bin/sh", "-c", "sleep 300 & wait", "sh", f"{root}/exec/fake-monitor"],
            start_new_session=True,
        )
        child = _wait_for_child(stray.pid)
        # One that names it only in its environment (a created container's ``runc init``).
        init = subprocess.Popen(
            ["sleep", "300"],
            env={"_LIBCONTAINER_STATEDIR": f"{root}/exec/runc/abc"},
            start_new_session=True,
        )
        assert {stray.pid, child, init.pid} <= {p.pid for p in w.stray_processes()}
    finally:
        w.cleanup()
    assert stray.wait(timeout=10) == -9
    assert init.wait(timeout=10) == -9
    assert proc_cmdline(child)[:2] != ["sleep", "300"]
    _assert_gone(pid, root)
    assert (outside / "sentinel").read_text() == "keep me"
    w.cleanup()  # idempotent


def test_fixture_teardown_cleans_up_even_on_failure(tmp_path: Path) -> None:
    """Run the fixtures in an inner pytest whose test fails; everything must be gone."""
    record = tmp_path / "record.jsonl"
    (tmp_path / "conftest.py").write_text("from tests.integration.conftest import *\n")
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent("""
        import json, os

        def _record(w):
            with open(os.environ["WD_RECORD"], "a") as f:
                f.write(json.dumps({"pid": w.pid, "root": w.root}) + "\\n")

        def test_fails(whaled, docker_client):
            assert docker_client.ping()
            _record(whaled)
            assert False, "deliberate failure"

        def test_two(whaled_factory):
            for w in (whaled_factory(), whaled_factory()):
                _record(w)
    """)
    )
    pythonpath = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "WD_RECORD": str(record), "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    assert "whaled log (" in out, out  # the daemon log is attached to the failure
    daemons = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(daemons) == 3
    for d in daemons:
        _assert_gone(d["pid"], d["root"])
