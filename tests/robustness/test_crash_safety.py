"""Crash safety (issue 17, part 6): SIGKILL whaled at random moments of a busy workload.

One daemon; a seeded workload thread drives it through docker-py (create, start, exec, stop,
rm, commit, ``images.load`` of a small archive, ``import``, rmi); the test thread picks an
operation, lets the workload reach it, waits a random few ms to a few hundred ms (so the
kill lands inside that operation) and SIGKILLs whaled, restarts it on the same roots and
checks what the restart left (:func:`check_invariants`):

- ``GET /containers/json?all=1`` lists exactly the container directories on disk;
- every container inspects (200), and ``rm -f`` removes every one;
- every image runs ``true`` (each image once, when first seen, plus a random sample);
- no overlay mount, monitor (conmon) or cgroup is left for a container that is gone;
- no temp file of an interrupted write or upload, and every JSON state file parses.

The seed is printed (``WHALED_CRASH_SEED=<n>`` replays the same choices); ``make
robustness-long`` raises the kill count from 10 to 50.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from tests.robustness.conftest import LONG
from tests.support.whaled_proc import (
    API_VERSION,
    WhaledProcess,
    mounts_under,
    proc_cmdline,
    processes_referencing,
)

KILLS = 50 if LONG else 10
BASE = "crashbase:latest"
OPS = ("create", "start", "exec", "stop", "rm", "commit", "load", "import", "rmi")
WEIGHTS = (4, 4, 3, 2, 2, 2, 1, 1, 1)
MAX_CONTAINERS = 6
CGROUP_ROOT = "/sys/fs/cgroup"
#: Below these directories of the data root live container and image file trees, not state.
CONTENT_DIRS = ("diff", "merged", "work", "_data")
#: Names of temp files and upload scratch (osutil.atomic, layer ingests, load/builder
#: scratch, content ingests) that must not survive a start.
TEMP_MARKERS = (".tmp-", ".trash-")


# --- images the workload loads and imports ----------------------------------------------------


def _tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 946684800
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _with_marker(rootfs: bytes, marker: str) -> bytes:
    """The busybox rootfs tar plus ``/marker`` (a new layer with a new diff ID)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(rootfs)) as src,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for info in src:
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size = len(data)
        info.mtime = 946684800
        dst.addfile(info, io.BytesIO(data))
    return out.getvalue()


def load_archive(base_layer: bytes, marker: str, ref: str) -> bytes:
    """A ``docker save`` archive of a two-layer image: the busybox layer (already known to
    the daemon after the first load) and a small layer of its own."""
    top = _tar_of({"marker": marker.encode()})
    layers = [base_layer, top]
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2000-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "base"}, {"created_by": marker}],
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = {config_name: config}
    names = []
    for i, layer in enumerate(layers):
        names.append(f"l{i}/layer.tar")
        files[names[-1]] = layer
    files["manifest.json"] = json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": names}]
    ).encode()
    return _tar_of(files)


# --- the workload -----------------------------------------------------------------------------


@dataclass
class Workload:
    """The operations one thread runs against the daemon. ``gate`` lets the killer pick
    the next operation and learn when it begins; errors while the daemon dies are expected."""

    whaled: WhaledProcess
    rng: random.Random
    rootfs: bytes
    api: Any = None
    counter: int = 0
    made_images: set[str] = field(default_factory=set)
    ok: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    last_error: str = ""
    began: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def connect(self) -> None:
        self.api = docker.APIClient(base_url=self.whaled.url, version=API_VERSION, timeout=30)

    def _containers(self, running: bool | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.api.containers(all=True)
        if running is None:
            return found
        return [c for c in found if (c["State"] == "running") == running]

    def _pick(self, items: list[Any]) -> Any:
        return items[self.rng.randrange(len(items))] if items else None

    def run_one(self, op: str) -> None:
        self.counter += 1
        n = self.counter
        if op == "create":
            if len(self._containers()) >= MAX_CONTAINERS:
                op = "rm"
            else:
                # Options whose state a kill may cut: an anonymous volume, a published
                # port, --rm, a restart policy.
                volume = self.rng.random() < 0.3
                port = self.rng.random() < 0.2
                auto_remove = self.rng.random() < 0.2
                always = not auto_remove and self.rng.random() < 0.2
                # Some exit on their own soon after they start (their exit, --rm removal
                # or restart then runs in the background when the kill comes).
                brief = self.rng.random() < 0.25
                self.api.create_container(
                    BASE,
                    ["sh", "-c", "sleep 0.3" if brief else "trap 'exit 0' TERM; sleep 300 & wait"],
                    name=f"crash{n}",
                    volumes=["/data"] if volume else None,
                    ports=[80] if port else None,
                    host_config=self.api.create_host_config(
                        auto_remove=auto_remove,
                        restart_policy={"Name": "always"} if always else None,
                        port_bindings={80: ("127.0.0.1", None)} if port else None,
                    ),
                )
                return
        if op == "start":
            c = self._pick(self._containers(running=False))
            if c is not None:
                self.api.start(c["Id"])
        elif op == "exec":
            c = self._pick(self._containers(running=True))
            if c is not None:
                e = self.api.exec_create(c["Id"], ["sh", "-c", f"echo {n} > /tmp/x; cat /tmp/x"])
                self.api.exec_start(e["Id"])
        elif op == "stop":
            c = self._pick(self._containers(running=True))
            if c is not None:
                self.api.stop(c["Id"], timeout=2)
        elif op == "rm":
            c = self._pick(self._containers())
            if c is not None:
                self.api.remove_container(c["Id"], force=True, v=True)
        elif op == "commit":
            c = self._pick(self._containers())
            if c is not None:
                ref = f"crash/commit:{n}"
                self.made_images.add(ref)
                self.api.commit(c["Id"], repository="crash/commit", tag=str(n))
        elif op == "load":
            ref = f"crash/load:{n}"
            self.made_images.add(ref)
            self.api.load_image(load_archive(self.rootfs, f"load {n}", ref))
        elif op == "import":
            ref = f"crash/import:{n}"
            self.made_images.add(ref)
            self.api.import_image_from_data(
                _with_marker(self.rootfs, f"import {n}"), repository="crash/import", tag=str(n)
            )
        elif op == "rmi":
            tags = [t for i in self.api.images() for t in i.get("RepoTags") or []]
            ref = self._pick([t for t in tags if t.startswith("crash/")])
            if ref is not None:
                self.api.remove_image(ref, force=True)

    def until_killed(self, warmup: int, op: str) -> None:
        """Run ``warmup`` random operations, then ``op``, setting ``began`` as it starts;
        keep going with random operations until a request fails (the daemon died)."""
        try:
            for i in range(10_000):
                if i == warmup:
                    self.began.set()
                    chosen = op
                else:
                    chosen = self.rng.choices(OPS, WEIGHTS)[0]
                try:
                    self.run_one(chosen)
                    self.ok[chosen] = self.ok.get(chosen, 0) + 1
                except docker.errors.APIError as e:
                    self.failed[chosen] = self.failed.get(chosen, 0) + 1
                    if e.status_code is not None and e.status_code >= 500 and (self.whaled.running):
                        self.errors.append(f"{chosen}: {e}")
                except Exception as e:
                    self.failed[chosen] = self.failed.get(chosen, 0) + 1
                    self.last_error = f"{chosen}: {type(e).__name__}: {e}"
                    if not self.whaled.running:
                        return
                    time.sleep(0.01)
                if not self.whaled.running:
                    return
        finally:
            self.began.set()
            self.done.set()


# --- invariants -------------------------------------------------------------------------------


def _walk_state(data_root: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` of the data root without the file trees of containers, images and
    volumes (``diff``, ``merged``, ``work``, volume ``_data``)."""
    for dirpath, dirnames, filenames in os.walk(data_root):
        dirnames[:] = [d for d in dirnames if d not in CONTENT_DIRS]
        yield dirpath, dirnames, filenames


def state_problems(data_root: str) -> list[str]:
    """Temp files left behind and JSON state files that do not parse."""
    problems = []
    for dirpath, dirnames, filenames in _walk_state(data_root):
        rel = os.path.relpath(dirpath, data_root)
        for name in dirnames + filenames:
            if any(m in name for m in TEMP_MARKERS):
                problems.append(f"temp file left: {os.path.join(rel, name)}")
        if rel in ("image/tmp", "builder/tmp") and (dirnames or filenames):
            problems.append(f"upload scratch left in {rel}: {dirnames + filenames}")
        for name in filenames:
            if name.endswith(".json") or name == "repositories.json":
                path = os.path.join(dirpath, name)
                try:
                    with open(path, encoding="utf-8") as f:
                        json.load(f)
                except (OSError, ValueError) as e:
                    problems.append(f"unreadable state file {os.path.join(rel, name)}: {e}")
    return problems


def container_dirs(data_root: str) -> set[str]:
    root = os.path.join(data_root, "containers")
    return {n for n in os.listdir(root) if not n.startswith(".")} if os.path.isdir(root) else set()


def mount_owner(data_root: str) -> dict[str, str]:
    """RW layer mount ID -> container ID (from the RW layers' records)."""
    owners = {}
    mounts_dir = os.path.join(data_root, "image", "layerdb", "mounts")
    if os.path.isdir(mounts_dir):
        for name in os.listdir(mounts_dir):
            if name.endswith(".json"):
                try:
                    with open(os.path.join(mounts_dir, name), encoding="utf-8") as f:
                        record = json.load(f)
                except (OSError, ValueError):
                    continue
                mount_id = record.get("mount_id") or record.get("MountID") or ""
                owners[mount_id] = name.removesuffix(".json")
    return owners


def _owner_of_path(path: str, owners: dict[str, str], ids: set[str]) -> str | None:
    """The container a path under the temp root belongs to: an RW layer's directory (by its
    mount ID), or a path naming the container's ID or its 16-character prefix."""
    for part in path.split("/"):
        if part in owners:
            return owners[part]
        for cid in ids:
            if part == cid or part == cid[:16]:
                return cid
    return None


def leftover_mounts(w: WhaledProcess, running: set[str]) -> list[str]:
    """Mounts under the temp root (rootfs overlays, network namespaces, ...) that no
    running container owns."""
    owners = mount_owner(w.data_root)
    bad = []
    for point in mounts_under(w.root):
        owner = _owner_of_path(os.path.relpath(point, w.root), owners, running)
        if owner is None or owner not in running:
            bad.append(point)
    return bad


def leftover_run_state(w: WhaledProcess, running: set[str], existing: set[str]) -> list[str]:
    """Per-container entries of the exec root: runtime state and network namespaces only
    for running containers; the run directory (bundle) for existing ones (it stays after
    an exit, as the bundle of any exited container, until the container is removed)."""
    bad = []
    for sub in ("c", "runc", "crun", "netns"):
        owners = existing if sub == "c" else running
        top = os.path.join(w.exec_root, sub)
        for name in os.listdir(top) if os.path.isdir(top) else ():
            if not any(name in (cid, cid[:16]) for cid in owners):
                bad.append(f"exec/{sub}/{name}")
    return bad


def leaked_endpoints(w: WhaledProcess, existing: set[str]) -> list[str]:
    """Network endpoints (IP addresses held) of containers that no longer exist."""
    bad = []
    top = os.path.join(w.data_root, "network")
    for name in os.listdir(top) if os.path.isdir(top) else ():
        if name.endswith(".json"):
            with open(os.path.join(top, name), encoding="utf-8") as f:
                doc = json.load(f)
            for ep in doc.get("endpoints") or []:
                if ep.get("container_id") not in existing:
                    bad.append(f"network {doc.get('name')}: endpoint of {ep.get('container_id')}")
    return bad


def volume_problems(w: WhaledProcess, api: Any, final: bool = False) -> list[str]:
    """Volume directories the API does not list (or, with ``final``, any volume: every
    container was removed with ``-v`` and the workload makes only anonymous ones)."""
    listed = {v["Name"] for v in api.volumes().get("Volumes") or []}
    top = os.path.join(w.data_root, "volumes")
    on_disk = (
        {
            n
            for n in os.listdir(top)
            if not n.startswith(".")
            and not n.endswith(".json")
            and os.path.isdir(os.path.join(top, n))
        }
        if os.path.isdir(top)
        else set()
    )
    bad = [f"volume dir {n} not listed" for n in sorted(on_disk - listed)]
    bad += [f"volume {n} listed without a dir" for n in sorted(listed - on_disk)]
    if final:
        bad += [f"volume {n} left after rm -v of every container" for n in sorted(listed)]
    return bad


def leaked_layers(w: WhaledProcess) -> list[str]:
    """Driver directories that neither an image layer nor an RW layer owns."""
    known = {"l"} | set(mount_owner(w.data_root))
    meta = os.path.join(w.data_root, "image", "layerdb", "sha256")
    for name in os.listdir(meta) if os.path.isdir(meta) else ():
        try:
            with open(os.path.join(meta, name), encoding="utf-8") as f:
                known.add(json.load(f).get("cache_id", ""))
        except (OSError, ValueError):
            pass
    top = os.path.join(w.data_root, "overlay2")
    return [f"overlay2/{n}" for n in os.listdir(top) if n not in known]


def leftover_monitors(w: WhaledProcess, running: set[str]) -> list[str]:
    """Processes naming the temp root (other than the daemon and its children) that do not
    belong to a running container."""
    bad = []
    procs = processes_referencing(w.root)
    pids = {p.pid for p in procs}
    for p in procs:
        if p.pid == w.pid or p.ppid == w.pid or p.ppid in pids:
            continue  # the daemon, its runtime calls, a monitor's container process
        cmd = " ".join(proc_cmdline(p.pid))
        if not any(cid in cmd for cid in running):
            bad.append(f"{p.pid}: {cmd[:300]}")
    return bad


def leftover_cgroups(w: WhaledProcess, running: set[str]) -> list[str]:
    bad = []
    parent = w.cgroup_parent.strip("/")
    for hierarchy in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hierarchy, parent)
        if os.path.isdir(top) and not os.path.islink(top):
            for name in os.listdir(top):
                if os.path.isdir(os.path.join(top, name)) and name not in running:
                    bad.append(f"{hierarchy}/{parent}/{name}")
    return bad


def settle(check: Callable[[], list[str]], timeout: float = 10.0) -> list[str]:
    """``check()`` until it finds nothing or ``timeout`` passes (background clean-ups)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@dataclass
class Checker:
    whaled: WhaledProcess
    rng: random.Random
    seen_images: set[str] = field(default_factory=set)

    def check(self, api: Any, must_run: set[str], label: str) -> None:
        w = self.whaled
        problems: list[str] = []
        # The state as the restart left it (background work of the start, such as
        # restart policies and --rm removals, may still be settling: checked until stable).
        listed: dict[str, Any] = {}

        def restored() -> list[str]:
            listed.clear()
            listed.update({c["Id"]: c for c in api.containers(all=True)})
            on_disk = container_dirs(w.data_root)
            found = []
            if set(listed) != on_disk:
                found.append(
                    f"listed {sorted(set(listed) - on_disk)} not on disk; "
                    f"on disk {sorted(on_disk - set(listed))} not listed"
                )
            running = {
                i for i, c in listed.items() if c["State"] in ("running", "paused", "restarting")
            }
            found += [f"mount left: {m}" for m in leftover_mounts(w, running)]
            found += [f"monitor left: {m}" for m in leftover_monitors(w, running)]
            found += [f"cgroup left: {m}" for m in leftover_cgroups(w, running)]
            found += leftover_run_state(w, running, set(listed))
            found += leaked_endpoints(w, set(listed))
            found += state_problems(w.data_root)
            found += leaked_layers(w)
            found += volume_problems(w, api)
            return found

        problems += settle(restored)
        for cid in list(listed):
            status, _, body = w.request("GET", f"/containers/{cid}/json")
            if status == 404 and cid not in container_dirs(w.data_root):
                listed.pop(cid)  # a --rm container removed by the start meanwhile
            elif status != 200:
                problems.append(f"inspect {cid[:12]}: {status} {body[:200]!r}")
            elif json.loads(body)["State"]["Running"] and "sleep 300" in listed[cid]["Command"]:
                # (not one of the brief containers, which may exit at any moment)
                pid = json.loads(body)["State"]["Pid"]
                if not pid or not os.path.exists(f"/proc/{pid}"):
                    problems.append(f"{cid[:12]} running without a live process ({pid})")
                problems += self._execs(api, cid)
            if status == 200:
                status, _, body = w.request("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
                if status != 200:
                    problems.append(f"logs {cid[:12]}: {status} {body[:200]!r}")
        # Every image runs `true`: each one once when first seen, plus a sample of the others.
        images = {i["Id"]: i for i in api.images()}
        tags = {t for i in images.values() for t in i.get("RepoTags") or []}
        new = sorted(set(images) - self.seen_images)
        old = sorted(set(images) & self.seen_images)
        for image_id in new + self.rng.sample(old, min(2, len(old))):
            problems += self._runs_true(api, image_id)
        self.seen_images |= set(new)
        for ref in must_run & tags:
            problems += self._runs_true(api, ref)
        # Every container can be removed, and nothing is left of it.
        for cid in listed:
            status, _, body = w.request("DELETE", f"/containers/{cid}?force=1&v=1")
            if status == 404 and cid not in container_dirs(w.data_root):
                continue  # a --rm container removed by the start meanwhile
            if status != 204:
                problems.append(f"rm -f {cid[:12]}: {status} {body[:200]!r}")
        left = settle(lambda: sorted(container_dirs(w.data_root)))
        problems += [f"after rm: dir left {d}" for d in left]
        problems += [f"after rm: {m}" for m in settle(lambda: leftover_mounts(w, set()))]
        problems += [f"after rm: {m}" for m in settle(lambda: leftover_monitors(w, set()))]
        problems += [f"after rm: {m}" for m in settle(lambda: leftover_cgroups(w, set()))]
        problems += [f"after rm: {m}" for m in settle(lambda: leftover_run_state(w, set(), set()))]
        problems += [f"after rm: {m}" for m in settle(lambda: leaked_endpoints(w, set()))]
        problems += [f"after rm: {m}" for m in settle(lambda: leaked_layers(w))]
        problems += [f"after rm: {m}" for m in settle(lambda: volume_problems(w, api, final=True))]
        assert not problems, f"{label}:\n" + "\n".join(problems)

    def _execs(self, api: Any, cid: str) -> list[str]:
        """A running (possibly re-adopted) container still takes an exec."""
        try:
            e = api.exec_create(cid, ["echo", "alive"])
            out = api.exec_start(e["Id"])
        except docker.errors.APIError as e:
            return [f"exec in {cid[:12]}: {e}"]
        return [] if out.strip() == b"alive" else [f"exec in {cid[:12]} printed {out!r}"]

    def _runs_true(self, api: Any, image: str) -> list[str]:
        try:
            c = api.create_container(image, ["true"])
            try:
                api.start(c["Id"])
                code = api.wait(c["Id"], timeout=30)["StatusCode"]
            finally:
                api.remove_container(c["Id"], force=True, v=True)
        except docker.errors.APIError as e:
            return [f"image {image[:30]} does not run `true`: {e}"]
        return [] if code == 0 else [f"image {image[:30]}: `true` exited {code}"]


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.timeout(900 if LONG else 300)
def test_sigkill_during_workload(whaled: WhaledProcess, busybox_tar: str) -> None:
    seed = int(os.environ.get("WHALED_CRASH_SEED") or random.randrange(1 << 32))
    print(f"crash-safety seed: WHALED_CRASH_SEED={seed} ({KILLS} kills)")
    rng = random.Random(seed)
    with open(busybox_tar, "rb") as f:
        rootfs = f.read()
    whaled.import_image(busybox_tar, BASE)
    checker = Checker(whaled, random.Random(rng.random()))
    workload = Workload(whaled, random.Random(rng.random()), rootfs)
    survived = 0
    restarts_killed = 0
    targets = [OPS[i % len(OPS)] for i in range(KILLS)]
    rng.shuffle(targets)
    for kill, op in enumerate(targets):
        workload.connect()
        workload.began = threading.Event()
        workload.done = threading.Event()
        warmup = rng.randrange(12)
        delay = 0.002 * (250 ** rng.random())  # log-uniform, 2 ms .. 500 ms
        thread = threading.Thread(
            target=workload.until_killed, args=(warmup, op), name="workload", daemon=True
        )
        thread.start()
        assert workload.began.wait(120), "the workload never reached its operation"
        time.sleep(delay)
        whaled.kill9()
        assert workload.done.wait(60), "the workload hung after the kill"
        thread.join(10)
        assert not workload.errors, f"5xx while the daemon ran: {workload.errors}"
        if rng.random() < 0.25:
            # Once in a while the restart itself is cut short (mid-restore, mid-sweep).
            whaled.start()
            time.sleep(rng.uniform(0.2, 1.5))
            whaled.kill9()
            restarts_killed += 1
        whaled.restart()
        api = docker.APIClient(base_url=whaled.url, version=API_VERSION, timeout=60)
        try:
            checker.check(
                api,
                {BASE},
                f"kill {kill + 1} (seed {seed}) during {op} after {delay * 1000:.0f} ms",
            )
        finally:
            api.close()
        survived += 1
    print(
        f"crash-safety: {survived} kills survived, {restarts_killed} more during restarts "
        f"(seed {seed})"
    )
    print(f"operations done: {workload.ok}; cut short or refused: {workload.failed}")
    assert survived >= KILLS
    # Every image the workload made and that is still there runs.
    api = docker.APIClient(base_url=whaled.url, version=API_VERSION, timeout=60)
    try:
        checker.seen_images.clear()
        checker.check(api, workload.made_images, "final check")
    finally:
        api.close()
