"""Issue 6's "Shows": runtimes locked in per container, transactional SIGHUP reload.

Runtimes with arguments are runc with harmless global flags (crun cannot run on the
development hosts, see docs/MACHINE.md). Where a test needs to see which executable a
runtime call went through, the runtime's path is a small script that appends its arguments
to a trace file and execs runc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import docker
import pytest

from tests.support.dockercli import DockerCLI
from tests.support.whaled_proc import (
    API_VERSION,
    REPO_ROOT,
    UnixHTTPConnection,
    WhaledProcess,
    mounts_under,
    processes_referencing,
)

RUNC = shutil.which("runc") or "/usr/sbin/runc"
RUN = ("run", "--network", "none")
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
ARGS_A = ["--log-format", "json"]
ARGS_B = ["--debug"]
UNKNOWN_RUNTIME = "unknown or invalid runtime name"
# /info fields that change between two calls whatever the configuration.
VOLATILE_INFO = ("SystemTime", "NFd", "NGoroutines", "NEventsListener")


# -- helpers -------------------------------------------------------------------------------


def custom(path: str = RUNC, args: list[str] | None = None) -> dict[str, Any]:
    rt: dict[str, Any] = {"path": path}
    if args:
        rt["runtimeArgs"] = args
    return {"custom": rt}


class DaemonEvents:
    """``GET /events?filters={"type":["daemon"]}``, subscribed before any signal is sent."""

    def __init__(self, w: WhaledProcess, timeout: float = 30.0) -> None:
        self.conn = UnixHTTPConnection(w.sock, timeout=timeout)
        filters = quote(json.dumps({"type": ["daemon"]}))
        self.conn.request("GET", f"/v{API_VERSION}/events?filters={filters}")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200

    def next(self) -> dict[str, Any]:
        line = self.resp.readline()
        if not line:
            raise AssertionError("the event stream ended")
        event: dict[str, Any] = json.loads(line)
        return event

    def close(self) -> None:
        self.conn.close()


def reload(w: WhaledProcess, events: DaemonEvents, config: Mapping[str, Any] | str) -> Any:
    """Write the config, SIGHUP, return the outcome event (``reload`` / ``reload_failed``)."""
    w.write_config(config)
    w.reload()
    event = events.next()
    assert event["Type"] == "daemon", event
    return event


def reloaded(w: WhaledProcess, events: DaemonEvents, config: Mapping[str, Any]) -> Any:
    event = reload(w, events, config)
    assert event["Action"] == "reload", event
    attrs: dict[str, str] = event["Actor"]["Attributes"]
    return attrs


def info(w: WhaledProcess) -> dict[str, Any]:
    status, _, body = w.request("GET", f"/v{API_VERSION}/info")
    assert status == 200, body
    data: dict[str, Any] = json.loads(body)
    return data


def stable_info(w: WhaledProcess) -> dict[str, Any]:
    return {k: v for k, v in info(w).items() if k not in VOLATILE_INFO}


def inspect(cli: DockerCLI, cid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli.run("inspect", cid).stdout)[0]
    return data


def wrappers_dir(w: WhaledProcess) -> str:
    return os.path.join(w.exec_root, "runtimes")


def wrapper_files(w: WhaledProcess) -> set[str]:
    try:
        return set(os.listdir(wrappers_dir(w)))
    except FileNotFoundError:
        return set()


def run_custom(cli: DockerCLI, *extra: str) -> str:
    return cli.run(*RUN, "-d", *extra, "busybox", *STOPPABLE).stdout.strip()


def monitor_runtime(w: WhaledProcess, cid: str) -> str:
    """The ``--runtime`` conmon was started with for the container ``cid``."""
    for p in processes_referencing(w.root):
        argv = _cmdline(p.pid)
        if argv and os.path.basename(argv[0]) == "conmon" and cid in argv and "--runtime" in argv:
            return argv[argv.index("--runtime") + 1]
    raise AssertionError(f"no conmon found for {cid[:12]}")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


RUNC_OPS = ("create", "start", "exec", "pause", "resume", "kill", "delete", "state", "update")


def traced_calls(trace: Path, cid: str) -> list[tuple[tuple[str, ...], str]]:
    """(global arguments before whaled's ``--root``, runc command) of every traced call
    that names ``cid``."""
    out = []
    text = trace.read_text() if trace.exists() else ""
    for line in text.splitlines():
        words = line.split()
        if cid not in words or "--root" not in words:
            continue
        root = words.index("--root")
        prefix = tuple(words[:root])
        op = next((w for w in words[root + 2 :] if w in RUNC_OPS), "?")
        out.append((prefix, op))
    return out


def traced_runc(directory: Path) -> tuple[str, Path]:
    """A runtime binary that logs its arguments to a trace file and execs runc."""
    trace = directory / "trace.log"
    script = directory / "traced-runc"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {trace}\nexec {RUNC} "$@"\n')
    script.chmod(0o755)
    return str(script), trace


def reload_cmd(w: WhaledProcess) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "whaled", "reload", "--config-file", w.config_path]
    argv += ["-H", w.url, "--pidfile", w.pidfile, "--timeout", "20"]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli(whaled: WhaledProcess, busybox_image: str) -> Iterator[DockerCLI]:
    with DockerCLI(whaled.sock) as c:
        yield c


@pytest.fixture
def events(whaled: WhaledProcess) -> Iterator[DaemonEvents]:
    ev = DaemonEvents(whaled)
    yield ev
    ev.close()


# -- the registry as docker info and create see it -------------------------------------------


@pytest.mark.whaled_config(runtimes={**custom(args=ARGS_A), "plain": {"path": RUNC}})
def test_info_lists_the_registry_and_an_unknown_runtime_is_a_400(
    whaled: WhaledProcess, cli: DockerCLI
) -> None:
    runtimes = info(whaled)["Runtimes"]
    assert runtimes["custom"] == {"path": RUNC, "runtimeArgs": ARGS_A}
    assert runtimes["plain"] == {"path": RUNC}
    assert runtimes["runc"]["path"] == runtimes["io.containerd.runc.v2"]["path"]
    assert "runtimeArgs" not in runtimes["runc"]
    assert not any(wrappers_dir(whaled) in rt["path"] for rt in runtimes.values())
    shown = cli.run("info", "--format", "{{.DefaultRuntime}} {{json .Runtimes}}").stdout
    default, _, as_json = shown.strip().partition(" ")
    assert default == "runc" and json.loads(as_json)["custom"]["runtimeArgs"] == ARGS_A

    done = cli.run(*RUN, "--runtime", "nope", "busybox", "true", check=False)
    assert done.returncode == 125 and f"{UNKNOWN_RUNTIME}: nope" in done.stderr
    status, _, body = whaled.request(
        "POST",
        f"/v{API_VERSION}/containers/create",
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Runtime": "nope"}},
    )
    assert (status, json.loads(body)["message"]) == (400, f"{UNKNOWN_RUNTIME}: nope")
    assert cli.run("ps", "-aq").stdout.strip() == ""

    plain = run_custom(cli, "--runtime", "plain")
    with_args = run_custom(cli, "--runtime", "custom")
    assert inspect(cli, plain)["WhaledRuntimePath"] == RUNC  # no args: the binary itself
    path = inspect(cli, with_args)["WhaledRuntimePath"]
    assert os.path.dirname(path) == wrappers_dir(whaled)
    assert Path(path).read_text() == f'#!/bin/sh\nexec {RUNC} --log-format json "$@"\n'
    assert monitor_runtime(whaled, with_args) == path
    cli.run("rm", "-f", plain, with_args)


# -- Show: a container keeps its runtime whatever reloads do -----------------------------------


def test_a_container_keeps_working_after_its_runtime_is_changed_and_removed(
    whaled_factory: Any, busybox_tar: str, tmp_path: Path
) -> None:
    binary, trace = traced_runc(tmp_path)
    w = whaled_factory({"runtimes": custom(binary, ARGS_A)})
    w.import_image(busybox_tar, "busybox:latest")
    events = DaemonEvents(w)
    with DockerCLI(w.sock) as cli:
        c1 = run_custom(cli, "--runtime", "custom")
        path1 = inspect(cli, c1)["WhaledRuntimePath"]
        assert os.path.dirname(path1) == wrappers_dir(w)

        # 1. the runtime's arguments change: c1 keeps the old wrapper, new starts get a new one
        attrs = reloaded(w, events, {"runtimes": custom(binary, ARGS_B)})
        assert "runtimes" in attrs["changed"].split(",")
        assert info(w)["Runtimes"]["custom"]["runtimeArgs"] == ARGS_B
        assert cli.run("exec", c1, "echo", "one").stdout == "one\n"
        cli.run("pause", c1)
        cli.run("unpause", c1)
        c2 = run_custom(cli, "--runtime", "custom")
        path2 = inspect(cli, c2)["WhaledRuntimePath"]
        assert path2 != path1 and os.path.dirname(path2) == wrappers_dir(w)
        assert inspect(cli, c1)["WhaledRuntimePath"] == path1

        # 2. the runtime is removed: both containers stay manageable on their own wrappers
        reloaded(w, events, {})
        assert "custom" not in info(w)["Runtimes"]
        mark = {c1: len(traced_calls(trace, c1)), c2: len(traced_calls(trace, c2))}
        for cid in (c1, c2):
            assert cli.run("exec", cid, "echo", "two").stdout == "two\n"
            cli.run("pause", cid)
            assert inspect(cli, cid)["State"]["Status"] == "paused"
            cli.run("unpause", cid)
        cli.run("kill", c1)
        cli.run("stop", "-t", "5", c2)
        for cid in (c1, c2):
            assert inspect(cli, cid)["State"]["Status"] == "exited"
        assert {os.path.basename(path1), os.path.basename(path2)} <= wrapper_files(w)

        # every runtime call of each container went through its own wrapper's arguments
        calls1, calls2 = traced_calls(trace, c1), traced_calls(trace, c2)
        assert {args for args, _ in calls1} == {tuple(ARGS_A)}, calls1
        assert {args for args, _ in calls2} == {tuple(ARGS_B)}, calls2
        after1 = {op for _, op in calls1[mark[c1] :]}
        after2 = {op for _, op in calls2[mark[c2] :]}
        assert {"exec", "pause", "resume", "kill"} <= after1, calls1
        assert {"exec", "pause", "resume", "kill"} <= after2, calls2

        # a new start resolves against the current config: custom is gone
        again = cli.run("start", c2, check=False)
        assert again.returncode != 0 and f"{UNKNOWN_RUNTIME}: custom" in again.stderr
        done = cli.run(*RUN, "--runtime", "custom", "busybox", "true", check=False)
        assert done.returncode == 125 and f"{UNKNOWN_RUNTIME}: custom" in done.stderr
        # and once it is back, the start works (with the arguments configured now)
        reloaded(w, events, {"runtimes": custom(binary, ARGS_A)})
        cli.run("start", c2)
        assert inspect(cli, c2)["WhaledRuntimePath"] == path1
        cli.run("rm", "-f", c1, c2)
    events.close()


# -- Show: a bad reload changes nothing -------------------------------------------------------

BASE = {"labels": ["stage=one"], "runtimes": custom(args=ARGS_A)}
BAD_RELOADS = [
    pytest.param('{"labels": ["stage=two"], ', "invalid JSON in", id="bad-json"),
    pytest.param(
        {"labels": ["stage=two"], "bogus-key": True},
        "the following directives don't match any configuration option: bogus-key",
        id="unknown-key",
    ),
    pytest.param(
        {**BASE, "labels": ["stage=two"], "default-runtime": "ghost"},
        "specified default runtime 'ghost' does not exist",
        id="unknown-default-runtime",
    ),
    pytest.param(
        {"labels": ["stage=two"], "runtimes": {"runc": {"path": RUNC, "runtimeArgs": ARGS_B}}},
        "runtime name 'runc' is reserved",
        id="reserved-name",
    ),
    pytest.param(
        {"labels": ["stage=two"], "runtimes": custom("/etc/passwd", ARGS_B)},
        'runtime custom: path "/etc/passwd" is not an executable file',
        id="not-executable",
    ),
]


@pytest.mark.whaled_config(BASE)
@pytest.mark.parametrize(("config", "reason"), BAD_RELOADS)
def test_a_bad_reload_changes_nothing_and_says_why(
    whaled: WhaledProcess, events: DaemonEvents, config: Any, reason: str
) -> None:
    before = stable_info(whaled)
    wrappers = wrapper_files(whaled)
    event = reload(whaled, events, config)
    assert event["Action"] == "reload_failed", event
    assert reason in event["Actor"]["Attributes"]["error"]
    assert stable_info(whaled) == before
    assert wrapper_files(whaled) == wrappers
    log = whaled.log_text()
    assert "Error reloading the configuration, nothing changed" in log
    assert json.dumps(reason)[1:-1] in log  # the log line is logfmt: quotes are escaped
    done = reload_cmd(whaled)
    assert done.returncode == 1 and reason in done.stderr, done
    if "the file is invalid" not in done.stderr:
        # Checks that need the daemon's flags are the daemon's: it was signalled and said no.
        again = events.next()
        assert again["Action"] == "reload_failed"
        assert reason in again["Actor"]["Attributes"]["error"]
    assert stable_info(whaled) == before
    # a good file afterwards applies
    assert reloaded(whaled, events, {**BASE, "labels": ["stage=three"]})["labels"] == (
        '["stage=three"]'
    )
    assert info(whaled)["Labels"] == ["stage=three"]


# -- each reloadable key takes effect without a restart ---------------------------------------

MIRROR = "https://mirror.example:5000"


def _registry(i: dict[str, Any]) -> dict[str, Any]:
    reg: dict[str, Any] = i["RegistryConfig"]
    return reg


INFO_KEYS = [
    pytest.param({"labels": ["team=whale", "x=1"]}, lambda i: i["Labels"] == ["team=whale", "x=1"],
                 id="labels"),
    pytest.param({"debug": True}, lambda i: i["Debug"] is True, id="debug"),
    pytest.param({"registry-mirrors": [MIRROR]},
                 lambda i: _registry(i)["Mirrors"] == [MIRROR + "/"] or _registry(i)["Mirrors"]
                 == [MIRROR], id="registry-mirrors"),
    pytest.param({"insecure-registries": ["10.9.0.0/16", "reg.example:5000"]},
                 lambda i: "10.9.0.0/16" in _registry(i)["InsecureRegistryCIDRs"]
                 and _registry(i)["IndexConfigs"]["reg.example:5000"]["Secure"] is False,
                 id="insecure-registries"),
    pytest.param({"live-restore": True}, lambda i: i["LiveRestoreEnabled"] is True,
                 id="live-restore"),
    pytest.param({"runtimes": custom(args=ARGS_A), "default-runtime": "custom"},
                 lambda i: i["DefaultRuntime"] == "custom" and "custom" in i["Runtimes"],
                 id="default-runtime"),
    pytest.param({"allow-nondistributable-artifacts": ["10.8.0.0/16", "reg.example"]},
                 lambda i: _registry(i)["AllowNondistributableArtifactsCIDRs"] == ["10.8.0.0/16"]
                 and _registry(i)["AllowNondistributableArtifactsHostnames"] == ["reg.example"],
                 id="allow-nondistributable-artifacts"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "shows"), INFO_KEYS)
def test_a_reloadable_key_shows_in_docker_info(
    whaled: WhaledProcess, events: DaemonEvents, change: dict[str, Any], shows: Any
) -> None:
    assert not shows(info(whaled))
    attrs = reloaded(whaled, events, change)
    assert set(attrs["changed"].split(",")) == set(change), attrs
    assert shows(info(whaled))
    reloaded(whaled, events, {})  # and back
    assert not shows(info(whaled))


def test_settings_without_an_info_field_travel_in_the_reload_event(
    whaled: WhaledProcess, events: DaemonEvents
) -> None:
    """max-concurrent-*, max-download-attempts, shutdown-timeout have no /info field (as in
    dockerd): the reload event carries the new snapshot's values; behaviour is tested below
    where whaled has it."""
    change = {
        "max-concurrent-downloads": 7,
        "max-concurrent-uploads": 2,
        "max-download-attempts": 9,
        "shutdown-timeout": 3,
    }
    attrs = reloaded(whaled, events, change)
    assert set(attrs["changed"].split(",")) == set(change)
    assert {k: attrs[k] for k in change} == {k: str(v) for k, v in change.items()}
    attrs = reloaded(whaled, events, {})
    assert attrs["max-concurrent-downloads"] == "3" and attrs["max-concurrent-uploads"] == "5"


def test_default_runtime_and_container_defaults_apply_to_the_next_run(
    whaled: WhaledProcess, cli: DockerCLI, events: DaemonEvents
) -> None:
    before = run_custom(cli)
    assert inspect(cli, before)["HostConfig"]["Runtime"] == "runc"
    assert inspect(cli, before)["WhaledRuntimePath"] == RUNC
    reloaded(
        whaled,
        events,
        {
            "runtimes": custom(args=ARGS_A),
            "default-runtime": "custom",
            "default-shm-size": "32M",
            "default-ipc-mode": "shareable",
        },
    )
    after = run_custom(cli)
    seen = inspect(cli, after)
    assert seen["HostConfig"]["Runtime"] == "custom"
    assert os.path.dirname(seen["WhaledRuntimePath"]) == wrappers_dir(whaled)
    assert monitor_runtime(whaled, after) == seen["WhaledRuntimePath"]
    assert seen["HostConfig"]["ShmSize"] == 32 * 1024 * 1024
    assert seen["HostConfig"]["IpcMode"] == "shareable"
    assert cli.run("exec", after, "echo", "ok").stdout == "ok\n"
    assert inspect(cli, before)["WhaledRuntimePath"] == RUNC  # the running one is untouched
    cli.run("rm", "-f", before, after)


def test_reloaded_shutdown_timeout_bounds_the_stop_at_shutdown(
    whaled: WhaledProcess, cli: DockerCLI, events: DaemonEvents
) -> None:
    # PID 1 ignores SIGTERM: at shutdown the daemon waits min(StopTimeout=10, shutdown-timeout)
    cid = cli.run(*RUN, "-d", "busybox", "sleep", "300").stdout.strip()
    reloaded(whaled, events, {"shutdown-timeout": 1})
    events.close()
    t0 = time.monotonic()
    assert whaled.stop(timeout=30) == 0
    took = time.monotonic() - t0
    assert took < 6.0, f"shutdown took {took:.1f} s: the reloaded shutdown-timeout was ignored"
    whaled.start()
    whaled.wait_ready()
    assert inspect(cli, cid)["State"]["Status"] == "exited"
    cli.run("rm", cid)


# -- Show: a restart removes exactly the wrappers no running container uses -------------------


def test_restart_removes_exactly_the_unreferenced_wrappers(
    whaled: WhaledProcess, cli: DockerCLI, events: DaemonEvents
) -> None:
    reloaded(whaled, events, {"runtimes": custom(args=ARGS_A)})
    # live-restore switched on by a reload: the container below must survive the restart
    reloaded(whaled, events, {"runtimes": custom(args=ARGS_A), "live-restore": True})
    kept = run_custom(cli, "--runtime", "custom")
    kept_path = inspect(cli, kept)["WhaledRuntimePath"]
    pid = inspect(cli, kept)["State"]["Pid"]

    reloaded(whaled, events, {"runtimes": custom(args=ARGS_B), "live-restore": True})
    stopped = run_custom(cli, "--runtime", "custom")
    stopped_path = inspect(cli, stopped)["WhaledRuntimePath"]
    cli.run("stop", "-t", "5", stopped)
    # a reload writes the wrapper of a new runtime before any container uses it
    third = {"runtimes": custom(args=["--log-format", "text"]), "live-restore": True}
    reloaded(whaled, events, third)
    files = wrapper_files(whaled)
    assert len(files) == 3
    assert {os.path.basename(kept_path), os.path.basename(stopped_path)} < files
    events.close()

    whaled.restart()
    assert os.path.exists(f"/proc/{pid}")
    assert inspect(cli, kept)["State"]["Status"] == "running"
    assert wrapper_files(whaled) == {os.path.basename(kept_path)}
    assert cli.run("exec", kept, "echo", "still").stdout == "still\n"
    cli.run("pause", kept)
    cli.run("unpause", kept)
    cli.run("stop", "-t", "5", kept)
    # the stopped one resolves again at its next start (current config, new wrapper)
    cli.run("start", stopped)
    assert inspect(cli, stopped)["WhaledRuntimePath"] not in (kept_path, stopped_path)
    cli.run("rm", "-f", kept, stopped)


# -- Show: containers come and go while the config flips 200+ times ---------------------------

RACE_CLIENTS = 8
RACE_RELOADS = 210
RACE_CONFIGS = [
    {"runtimes": custom(args=ARGS_A)},
    {},
    {"runtimes": custom(args=["--log-format", "text"])},
]


T = TypeVar("T")


def settled(probe: Callable[[], list[T]], timeout: float = 10.0) -> list[T]:
    """``probe()`` once it is empty, or what it still returns after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := probe()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


class RaceClient(threading.Thread):
    """``docker run --runtime custom -d`` + exec + stop + rm until told to stop."""

    def __init__(self, w: WhaledProcess, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.api = docker.APIClient(base_url=w.url, version=API_VERSION, timeout=60)
        self.stop_flag = stop
        self.started = 0
        self.refused = 0
        self.paths: set[str] = set()
        self.errors: list[str] = []

    def refused_cleanly(self, e: docker.errors.APIError, cid: str | None) -> bool:
        if e.status_code == 400 and UNKNOWN_RUNTIME in str(e.explanation):
            self.refused += 1
            return True
        self.errors.append(f"{'start' if cid else 'create'}: {e.status_code} {e.explanation}")
        return False

    def one(self) -> None:
        api = self.api
        try:
            cid = api.create_container(
                "busybox",
                STOPPABLE,
                host_config=api.create_host_config(runtime="custom", network_mode="none"),
            )["Id"]
        except docker.errors.APIError as e:
            self.refused_cleanly(e, None)
            return
        try:
            api.start(cid)
        except docker.errors.APIError as e:
            self.refused_cleanly(e, cid)
            api.remove_container(cid, force=True)
            return
        self.paths.add(api.inspect_container(cid)["WhaledRuntimePath"])
        exec_id = api.exec_create(cid, ["echo", "in"])["Id"]
        out = api.exec_start(exec_id)
        code = api.exec_inspect(exec_id)["ExitCode"]
        if out != b"in\n" or code != 0:
            self.errors.append(f"exec in {cid[:12]}: exit {code}, output {out!r}")
        api.stop(cid, timeout=10)
        state = api.inspect_container(cid)["State"]
        if state["Status"] != "exited" or state["ExitCode"] != 0:
            self.errors.append(f"stop of {cid[:12]}: {state['Status']} exit {state['ExitCode']}")
        api.remove_container(cid)
        self.started += 1

    def run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                try:
                    self.one()
                except Exception as e:
                    self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            self.api.close()


def test_race_containers_keep_working_while_the_config_flips(
    whaled_factory: Any, busybox_tar: str
) -> None:
    w = whaled_factory(RACE_CONFIGS[0])
    w.import_image(busybox_tar, "busybox:latest")
    stop = threading.Event()
    clients = [RaceClient(w, stop) for _ in range(RACE_CLIENTS)]
    events = DaemonEvents(w, timeout=60)
    outcomes: list[str] = []
    t0 = time.monotonic()
    try:
        for c in clients:
            c.start()
        for i in range(RACE_RELOADS):
            w.write_config(RACE_CONFIGS[(i + 1) % len(RACE_CONFIGS)])
            assert w.pid is not None
            os.kill(w.pid, signal.SIGHUP)
            outcomes.append(events.next()["Action"])
            time.sleep(0.06)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=120)
        events.close()
    took = time.monotonic() - t0
    assert outcomes == ["reload"] * RACE_RELOADS
    errors = [e for c in clients for e in c.errors]
    assert errors == [], errors[:20]
    started = sum(c.started for c in clients)
    refused = sum(c.refused for c in clients)
    assert started >= RACE_CLIENTS and refused >= 1, (started, refused)
    # nothing is stuck or leaked
    api = w.api()
    assert api.containers(all=True) == []
    # (a monitor may take a moment to exit after its container was removed)
    leftover = settled(lambda: [p for p in processes_referencing(w.root) if p.pid != w.pid])
    assert leftover == [], [(p.pid, _cmdline(p.pid)) for p in leftover]
    assert settled(lambda: mounts_under(w.root)) == []
    # no request ended in a 500 and no background task failed
    errors_logged = [line for line in w.log_text().splitlines() if "level=error" in line]
    assert errors_logged == [], errors_logged[:5]
    # every wrapper a container ran on is still there (never deleted while running)
    paths = set().union(*(c.paths for c in clients))
    assert all(os.path.exists(p) for p in paths), paths
    print(
        f"race: {started} containers ran, {refused} refused, {RACE_RELOADS} reloads, {took:.1f} s"
    )
