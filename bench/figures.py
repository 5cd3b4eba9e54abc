"""The figures, in groups. Each group measures one engine at a time (``on_engine``) and, where
one exists, the floor (``on_floor``), returning samples per figure key.

A group that needs an endpoint the engine does not have raises ``NotImplementedByEngine`` (from
``bench.client``) and its figures show "n/a (not implemented by this engine yet)" for that
engine; once the endpoint lands, the same code reports numbers. To add a figure: add a
``FigureSpec`` to a group (or a new ``Group`` subclass to ``GROUPS``) and return its samples.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import subprocess
import time
import traceback
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bench import canned, httpclient
from bench import reload as reload_bench
from bench.canned import EMPTY_LIST_RAW, PING_RAW
from bench.client import APIError, Client, NotImplementedByEngine, parallel, route_missing
from bench.engines import DockerdEngine, Engine, EngineFactory, WhaledEngine, rss_mib
from bench.floors import (
    NET_MIB,
    PUB_PORT,
    PUB_SERVER_CMD,
    STOPPABLE_CMD,
    TCP_PORT,
    TCP_SERVER_CMD,
    FloorError,
    FloorServer,
    NetnsFloor,
    RuncBundle,
    WhaledSpec,
    capture_bind_files,
    connect_reply_ms,
    log_floor_ms,
    log_writer_cmd,
    routed_overlaps,
    tar_extract_ms,
    tcp_client_script,
    transfer_seconds,
    wait_listening,
)
from bench.images import Archive, busybox_archive, load_test_archive
from bench.stats import Better, Outcome, median
from tests.support.whaled_proc import unix_request

Samples = list[float]
T = TypeVar("T")
Result = Mapping[str, Samples | Outcome]


@dataclass(frozen=True, slots=True)
class Params:
    quick: bool
    samples: int  # repeated CLI operations
    api_samples: int  # sequential API latencies
    rps_samples: int
    rps_window: float
    rps_warmup: float
    startup_samples: int
    rss_samples: int
    load_samples: int
    load_mb: int
    logs_samples: int
    logs_mb: int
    ps_containers: int
    mem_containers: int
    concurrencies: tuple[int, ...] = (1, 8, 64)

    @staticmethod
    def for_mode(quick: bool) -> Params:
        if quick:
            return Params(
                quick=True, samples=5, api_samples=50, rps_samples=5, rps_window=0.25,
                rps_warmup=0.15, startup_samples=3, rss_samples=5, load_samples=2, load_mb=200,
                logs_samples=2, logs_mb=50, ps_containers=200, mem_containers=20,
            )  # fmt: skip
        return Params(
            quick=False, samples=20, api_samples=200, rps_samples=20, rps_window=0.5,
            rps_warmup=0.3, startup_samples=10, rss_samples=10, load_samples=10, load_mb=200,
            logs_samples=5, logs_mb=200, ps_containers=1000, mem_containers=100,
        )  # fmt: skip


@dataclass
class Ctx:
    params: Params
    workdir: str
    engines: dict[str, Engine]
    clients: dict[str, Client]
    factories: dict[str, EngineFactory]
    log: Callable[[str], None]
    cache: dict[str, Any] = field(default_factory=dict)
    captured: dict[str, bytes] = field(default_factory=dict)  # path -> raw response
    busybox: dict[str, str | None] = field(default_factory=dict)  # engine -> n/a reason

    # -- shared artifacts, built on first use --

    def busybox_archive(self) -> Archive:
        if "busybox" not in self.cache:
            self.cache["busybox"] = busybox_archive(self._dir("busybox"))
        archive: Archive = self.cache["busybox"]
        return archive

    def load_archive(self) -> Archive:
        if "load" not in self.cache:
            self.log(f"  building the ~{self.params.load_mb} MB load-test image ...")
            self.cache["load"] = load_test_archive(self._dir("load"), self.params.load_mb)
        archive: Archive = self.cache["load"]
        return archive

    def minimal_bundle(self) -> RuncBundle:
        """``runc spec``'s default bundle (no seccomp, no network namespace)."""
        if "bundle" not in self.cache:
            rootfs = self.busybox_archive().layers[0]
            self.cache["bundle"] = RuncBundle(self._dir("runc"), rootfs)
        bundle: RuncBundle = self.cache["bundle"]
        return bundle

    def same_bundle(self) -> RuncBundle:
        """The bundle whaled itself hands to runc for ``docker run --network none busybox``,
        captured from a private whaled once per bench run (``capture_whaled_spec``); a failed
        capture is remembered and raised again as ``FloorError``."""
        if "same-bundle" not in self.cache:
            try:
                captured = capture_whaled_spec(self)
                rootfs = self.busybox_archive().layers[0]
                self.cache["same-bundle"] = RuncBundle(
                    self._dir("runc-same"), rootfs, whaled=captured
                )
            except Exception as e:
                why = f"whaled's bundle could not be captured: {error_text(e)}"
                self.cache["same-bundle"] = why
        got = self.cache["same-bundle"]
        if isinstance(got, str):
            raise FloorError(got)
        bundle: RuncBundle = got
        return bundle

    def _dir(self, name: str) -> str:
        d = os.path.join(self.workdir, name)
        os.makedirs(d, exist_ok=True)
        return d

    def cleanup(self) -> None:
        for key in ("bundle", "same-bundle"):
            b = self.cache.pop(key, None)
            if isinstance(b, RuncBundle):
                b.cleanup()

    def ensure_busybox(self, engine: str) -> None:
        """Load ``busybox:latest`` into the engine (``/images/load``, or ``/images/create?
        fromSrc=-`` as a fallback) once; raise ``NotImplementedByEngine`` if it can do
        neither."""
        if engine in self.busybox:
            reason = self.busybox[engine]
            if reason is not None:
                raise NotImplementedByEngine("POST", reason, 404)
            return
        try:
            load_busybox(self.clients[engine], self.busybox_archive())
        except NotImplementedByEngine:
            self.busybox[engine] = "/images/load and /images/create"
            raise
        self.busybox[engine] = None


def load_busybox(client: Client, archive: Archive) -> None:
    """``busybox:latest`` into the engine: ``/images/load``, else ``/images/create?fromSrc=-``
    (``NotImplementedByEngine`` if it has neither)."""
    try:
        client.upload("POST", "/images/load?quiet=1", archive.path)
    except NotImplementedByEngine:
        q = urllib.parse.urlencode({"fromSrc": "-", "repo": "busybox", "tag": "latest"})
        with open(archive.layers[0], "rb") as f:
            client.call("POST", f"/images/create?{q}", f.read())


CAPTURE_ARGS = ("--network", "none", "busybox", "sleep", "1000")


def capture_whaled_spec(ctx: Ctx) -> WhaledSpec:
    """The ``config.json`` a private whaled (own ``/tmp/wd-*`` root, same configuration as
    the engine under test, made by ``ctx.factories``) generates for ``docker create
    --network none busybox sleep 1000`` + ``docker start``, with the files it bind-mounts
    from its root. The container is removed and that whaled cleaned up before returning, so
    the floor never depends on the engine figures or on the order targets run in."""
    eng = ctx.factories["whaled"]()
    try:
        if not isinstance(eng, WhaledEngine):
            raise FloorError(f"whaled factory made a {type(eng).__name__}")
        eng.timed_start()
        client = Client(eng.sock)
        try:
            load_busybox(client, ctx.busybox_archive())
            cid = client.cli("create", *CAPTURE_ARGS).stdout.decode().strip()
            try:
                client.cli("start", cid)
                path = _bundle_config(eng.proc.exec_root, cid)
                with open(path, encoding="utf-8") as f:
                    spec: dict[str, Any] = json.load(f)
                files = capture_bind_files(spec, eng.root)
            finally:
                client.cli("rm", "--force", cid, check=False)
        finally:
            client.close()
    finally:
        eng.cleanup()
    linux = spec.get("linux", {})
    seccomp = linux.get("seccomp") or {}
    ctx.log(
        f"  floor: captured whaled's config.json ({path.removeprefix(eng.root)} under its root): "
        f"namespaces {','.join(str(n.get('type')) for n in linux.get('namespaces', []))}; "
        f"seccomp {seccomp.get('defaultAction', 'none')} with {len(seccomp.get('syscalls', []))}"
        f" rules; {len(spec.get('mounts', []))} mounts ({len(files)} files copied)"
    )
    return WhaledSpec(spec=spec, root=eng.root, files=files)


def _bundle_config(exec_root: str, cid: str) -> str:
    """``<exec_root>/c/<id[:16]>/config.json``; failing that, the only ``config.json`` below
    ``exec_root`` (the private whaled runs one container)."""
    path = os.path.join(exec_root, "c", cid[:16], "config.json")
    if os.path.isfile(path):
        return path
    found = sorted(glob.glob(os.path.join(glob.escape(exec_root), "**", "config.json"),
                             recursive=True))  # fmt: skip
    if len(found) != 1:
        raise FloorError(f"no bundle config.json for {cid[:12]} under {exec_root}: {found}")
    return found[0]


@dataclass(frozen=True, slots=True)
class FigureSpec:
    key: str
    name: str
    unit: str
    better: Better


FLOOR = "floor"
ALL = "*"  # a Result key that stands for every figure of the group


def error_text(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def attempt(ctx: Ctx, target: str, fn: Callable[[], T]) -> T | Outcome:
    """``fn()``; a missing endpoint becomes an n/a ``Outcome``, any other failure an error."""
    try:
        return fn()
    except NotImplementedByEngine as e:
        return Outcome.na(str(e))
    except Exception as e:
        ctx.log(f"  {target}: error: {error_text(e)}")
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()
        return Outcome.error(error_text(e))


class Group:
    """Figures measured one target after the other (``on_engine`` / ``on_floor``)."""

    name: str = ""
    help: str = ""
    has_floor: bool = False
    floor_note: str = ""
    needs_running_engine: bool = True

    def figures(self, p: Params) -> list[FigureSpec]:
        raise NotImplementedError

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        raise NotImplementedError

    def on_floor(self, ctx: Ctx) -> Result:
        return {}

    def measure_all(self, ctx: Ctx, targets: Sequence[str]) -> dict[str, Result]:
        out: dict[str, Result] = {}
        for t in targets:
            fn = partial(self.on_floor, ctx) if t == FLOOR else partial(self.on_engine, ctx, t)
            r = attempt(ctx, t, fn)
            out[t] = {ALL: r} if isinstance(r, Outcome) else r
        return out


class Interleaved(Group):
    """Cheap repeated operations, sampled round robin: after one warm-up round, every round
    takes one sample of each target in turn (rotating who goes first), so drift on a noisy
    machine hits every target alike. ``setup`` may put ``{"na": {key: Outcome}}`` into its
    state for figures this target cannot give; ``sample`` may add to it later (a figure that
    failed): those figures report that outcome instead of their samples."""

    def rounds(self, p: Params) -> int:
        return p.samples

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        raise NotImplementedError

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        raise NotImplementedError

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        pass

    def measure_all(self, ctx: Ctx, targets: Sequence[str]) -> dict[str, Result]:
        out: dict[str, dict[str, Samples | Outcome]] = {}
        states: dict[str, dict[str, Any]] = {}
        live: list[str] = []
        try:
            for t in targets:
                st = attempt(ctx, t, partial(self.setup, ctx, t))
                if isinstance(st, Outcome):
                    out[t] = {ALL: st}
                    continue
                states[t] = st
                out[t] = dict(st.get("na", {}))
                live.append(t)
            for i in range(-1, self.rounds(ctx.params)):  # round -1: warm-up
                k = max(i, 0) % len(live) if live else 0
                for t in live[k:] + live[:k]:
                    got = attempt(ctx, t, partial(self.sample, ctx, t, states[t]))
                    if isinstance(got, Outcome):
                        out[t] = {ALL: got}
                        live.remove(t)
                        continue
                    if i < 0:
                        continue
                    for key, v in got.items():
                        samples = out[t].setdefault(key, [])
                        if isinstance(samples, list):
                            samples.extend(v if isinstance(v, list) else [v])
            for t in live:  # figures that stopped during the rounds (see ``setup``)
                out[t].update(states[t].get("na", {}))
        finally:
            for t, st in states.items():
                attempt(ctx, t, partial(self.teardown, ctx, t, st))
        return dict(out)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# --- start-up and idle memory -----------------------------------------------------------------


#: Containers on disk in the second start-up figure (exited ones, to be loaded/re-adopted).
STARTUP_CONTAINERS = 100


class Startup(Interleaved):
    name = "startup"
    help = (
        "daemon start-up to the first successful /_ping (fresh process, warm roots), with no "
        f"containers and with {STARTUP_CONTAINERS} on disk; and to the first /containers/json "
        "that lists them (both engines without a default bridge)"
    )
    has_floor = True
    floor_note = "floor: a bare Python asyncio HTTP server process (bench/floorserver.py)"
    needs_running_engine = False

    def figures(self, p: Params) -> list[FigureSpec]:
        n = STARTUP_CONTAINERS
        return [
            FigureSpec("startup", "daemon start-up to first /_ping", "ms", "lower"),
            FigureSpec("startup_many", f"start-up to first /_ping, {n} containers", "ms", "lower"),
            FigureSpec("ready_many", f"start-up to first ps, {n} containers", "ms", "lower"),
        ]

    def rounds(self, p: Params) -> int:
        return p.startup_samples

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == FLOOR:
            na = Outcome.na("no containers in the floor server")
            return {
                "srv": FloorServer(ctx.workdir, "floor-startup", {"/_ping": PING_RAW}),
                "na": {"startup_many": na, "ready_many": na},
            }
        # Fresh roots; the warm-up round's start (which creates them) is not counted. No
        # default bridge on either engine: the reference dockerd never has one here.
        many = ctx.factories[target](default_bridge=False)
        many.timed_start()
        client = Client(many.sock)
        try:
            load_busybox(client, ctx.busybox_archive())
            for _ in range(STARTUP_CONTAINERS):
                client.start(client.create(["true"]))
        finally:
            client.close()
        many.stop()
        return {"eng": ctx.factories[target](default_bridge=False), "many": many}

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        if target == FLOOR:
            srv: FloorServer = state["srv"]
            t0 = time.perf_counter()
            srv.start_answering()
            took = _ms(t0)
            srv.stop()
            return {"startup": took}
        eng: Engine = state["eng"]
        took = eng.timed_start() * 1000.0
        eng.stop()
        many: Engine = state["many"]
        t0 = time.perf_counter()
        first_ping = many.timed_start() * 1000.0
        status, _, body = unix_request(many.sock, "GET", "/containers/json?all=1", timeout=60)
        ready = _ms(t0)
        listed = len(json.loads(body)) if status == 200 else -1
        many.stop()
        if listed != STARTUP_CONTAINERS:
            raise RuntimeError(f"/containers/json listed {listed} containers (status {status})")
        return {"startup": took, "startup_many": first_ping, "ready_many": ready}

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        if target == FLOOR:
            state["srv"].stop()
        else:
            state["eng"].cleanup()
            state["many"].cleanup()


class IdleRSS(Group):
    name = "idle-rss"
    help = "daemon RSS at idle (VmRSS; dockerd: + managed containerd)"
    has_floor = True
    floor_note = "floor: RSS of a bare Python asyncio HTTP server process"

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec("idle", "daemon idle RSS", "MiB", "lower")]

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        eng = ctx.engines[engine]
        return {"idle": _rss_samples(lambda: eng.daemon_rss_mib(), ctx.params.rss_samples)}

    def on_floor(self, ctx: Ctx) -> Result:
        srv = FloorServer(ctx.workdir, "floor-rss", {"/_ping": PING_RAW})
        try:
            srv.start_answering()
            pid = srv.pid
            assert pid is not None
            return {"idle": _rss_samples(lambda: rss_mib([pid]), ctx.params.rss_samples)}
        finally:
            srv.stop()


def _rss_samples(read: Callable[[], float], n: int, settle: float = 1.0) -> Samples:
    time.sleep(settle)
    out: Samples = []
    for _ in range(n):
        out.append(read())
        time.sleep(0.1)
    return out


# --- HTTP requests/s --------------------------------------------------------------------------


class HTTPRate(Group):
    name = "http"
    help = "API requests/s on keep-alive connections, concurrency 1/8/64 (targets interleaved)"
    has_floor = True
    floor_note = (
        "floor: the same asyncio client against a trivial asyncio server replaying the "
        "engine's bytes (the client's own ceiling shows here)"
    )
    paths = ("/_ping", "/version", "/containers/json")

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec(f"{path} c={c}", f"GET {path} c={c}", "req/s", "higher")
            for path in self.paths
            for c in p.concurrencies
        ]

    def measure_all(self, ctx: Ctx, targets: Sequence[str]) -> dict[str, Result]:
        p = ctx.params
        out: dict[str, dict[str, Samples | Outcome]] = {t: {} for t in targets}
        socks: dict[str, dict[str, str]] = {path: {} for path in self.paths}
        for t in targets:
            if t == FLOOR:
                continue
            sock = ctx.engines[t].sock
            for path in self.paths:
                try:
                    resp = httpclient.fetch_sync(sock, "GET", path)
                except Exception as e:
                    reason = Outcome.error(f"GET {path}: {error_text(e)}")
                else:
                    if resp.status == 200:
                        if t == "whaled" or path not in ctx.captured:
                            ctx.captured[path] = resp.raw
                        socks[path][t] = sock
                        continue
                    if route_missing(resp.status, resp.body):
                        reason = Outcome.na(str(NotImplementedByEngine("GET", path, resp.status)))
                    else:
                        reason = Outcome.error(f"GET {path}: {resp.status} {resp.body[:200]!r}")
                for c in p.concurrencies:
                    out[t][f"{path} c={c}"] = reason
        srv: FloorServer | None = None
        try:
            if FLOOR in targets:
                table = {"/_ping": PING_RAW, "/containers/json": EMPTY_LIST_RAW, **ctx.captured}
                srv = FloorServer(ctx.workdir, "floor-http", table)
                srv.start_answering()
                for path in self.paths:
                    if path in table:
                        socks[path][FLOOR] = srv.sock
            for path in self.paths:
                for c in p.concurrencies:
                    key = f"{path} c={c}"
                    if not socks[path]:
                        continue
                    res = httpclient.measure_rps_interleaved(
                        socks[path], path, c, p.rps_samples, p.rps_window, p.rps_warmup
                    )
                    for t, v in res.items():
                        out[t][key] = Outcome.error(v) if isinstance(v, str) else v
        finally:
            if srv is not None:
                srv.stop()
        return dict(out)


# --- images -----------------------------------------------------------------------------------


class ImageLoad(Interleaved):
    """Sampled round robin like the cheap figures: a load writes ~200 MB, and the machine's
    disk drifts (a run's first load used to read half the speed of the next one when the
    targets went one after the other). Before each sample ``sync`` writes back what the
    sample before left dirty (the bench's archive build included), untimed, so that no
    target pays for another's writes."""

    name = "image-load"
    help = "docker load of a ~200 MB multi-layer image (random data, docker-archive)"
    has_floor = True
    floor_note = "floor: tar -x of the same layer tars"

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec("load", f"image load (~{p.load_mb} MB, 4 layers)", "MB/s", "higher")]

    def rounds(self, p: Params) -> int:
        return p.load_samples

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        archive = ctx.load_archive()
        if target == FLOOR:
            return {"archive": archive}
        client = ctx.clients[target]
        client.require("POST", "/images/load")
        return {"archive": archive, "client": client}

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        archive: Archive = state["archive"]
        if target == FLOOR:
            os.sync()
            ms = tar_extract_ms(archive.layers, ctx.workdir)
            return {"load": archive.size / 1e6 / (ms / 1e3)}
        client: Client = state["client"]
        self._remove(client, archive)
        os.sync()
        t0 = time.perf_counter()
        client.upload("POST", "/images/load?quiet=1", archive.path)
        secs = time.perf_counter() - t0
        self._remove(client, archive)
        return {"load": archive.size / 1e6 / secs}

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        if target != FLOOR:
            self._remove(state["client"], state["archive"])

    @staticmethod
    def _remove(client: Client, archive: Archive) -> None:
        ref = urllib.parse.quote(archive.repo_tag, safe="")
        client.call("DELETE", f"/images/{ref}?force=1", ok=(200, 404))


# --- containers -------------------------------------------------------------------------------


def _require_containers(ctx: Ctx, engine: str) -> Client:
    client = ctx.clients[engine]
    client.require("POST", "/containers/create", {})
    ctx.ensure_busybox(engine)
    return client


#: A CLI call against canned answers that has not ended by then has gone wrong (s).
CANNED_CLI_TIMEOUT = 30.0
CANNED_NOTE = (
    "the 'CLI alone' row: the same docker CLI command against bench/floorserver.py replaying "
    "canned answers for its whole request sequence (bench/canned.py), an engine that does "
    "no work: the CLI's own share, which no engine goes below"
)


class CannedCLI:
    """The docker CLI against a floor server replaying ``answers`` (``bench.canned``)."""

    def __init__(self, ctx: Ctx, name: str, answers: dict[str, bytes]) -> None:
        self.srv = FloorServer(ctx.workdir, name, answers)
        try:
            self.srv.start_answering()
        except BaseException:
            self.srv.stop()
            raise
        self.client = Client(self.srv.sock)

    def timed(self, *args: str) -> float:
        return self.client.timed_cli(*args, timeout=CANNED_CLI_TIMEOUT)

    def close(self) -> None:
        self.client.close()
        self.srv.stop()


SAME_BUNDLE = (
    "the bundle whaled itself generates for `docker run --network none busybox` (its "
    "config.json, captured at bench time from a private whaled: process, seccomp, namespaces "
    "incl. network, masked/readonly paths, devices, resources as generated; only root.path -> "
    "the floor's own busybox rootfs dir, no cgroupsPath, its hosts/hostname/resolv.conf copied "
    "into the bundle)"
)
MINIMAL_BUNDLE = "`runc spec`'s default bundle (no seccomp, no network namespace)"


class Run(Interleaved):
    name = "run"
    help = "docker run --rm --network none busybox true (real CLI, wall time)"
    has_floor = True
    floor_note = (
        f"floor: `runc run` (args true, foreground, then delete) of {SAME_BUNDLE}; "
        f"the 'minimal runc spec' row: `runc run` of {MINIMAL_BUNDLE}, args true; "
        f"{CANNED_NOTE}"
    )
    args = ("run", "--rm", "--network", "none", "busybox", "true")

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("run", "docker run --rm --network none busybox true", "ms", "lower"),
            FigureSpec("run-minimal", "runc run, minimal runc spec (no seccomp, no netns)",
                       "ms", "lower"),
            FigureSpec("run-cli", "docker run --rm --network none busybox true, CLI alone "
                       "(canned answers)", "ms", "lower"),
        ]  # fmt: skip

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == FLOOR:
            state: dict[str, Any] = {"minimal": ctx.minimal_bundle(), "na": {}}
            try:
                state["bundle"] = ctx.same_bundle()
            except FloorError as e:
                ctx.log(f"  floor: {e} (same-bundle floor left empty)")
                state["na"]["run"] = Outcome.error(str(e))
            state["cli"] = CannedCLI(ctx, "floor-run-cli", canned.run_answers())
            return state
        return {"client": _require_containers(ctx, target)}

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        if target == FLOOR:
            state["cli"].close()

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        if target == FLOOR:
            out: dict[str, float | Samples] = {}
            if "bundle" in state:
                b: RuncBundle = state["bundle"]
                b.write_spec(["true"])
                out["run"] = b.run_true()
            m: RuncBundle = state["minimal"]
            m.write_spec(["true"])
            out["run-minimal"] = m.run_true()
            out["run-cli"] = state["cli"].timed(*self.args)
            return out
        client: Client = state["client"]
        return {"run": client.timed_cli(*self.args)}


class Lifecycle(Interleaved):
    name = "lifecycle"
    help = "docker create / start / stop / rm, each timed separately (real CLI)"
    has_floor = True
    floor_note = (
        "floor: `runc create` / `start` / `kill TERM` + wait for exit / `delete` of "
        f"{SAME_BUNDLE}, args the same stoppable sh as the engines'"
    )
    steps = ("create", "start", "stop", "rm")

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec(s, f"docker {s}", "ms", "lower") for s in self.steps]

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == FLOOR:
            return {"bundle": ctx.same_bundle()}
        return {"client": _require_containers(ctx, target)}

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        if target == FLOOR:
            b: RuncBundle = state["bundle"]
            b.write_spec(STOPPABLE_CMD)
            return dict(b.lifecycle())
        client: Client = state["client"]
        t0 = time.perf_counter()
        done = client.cli("create", "--network", "none", "busybox", *STOPPABLE_CMD)
        t: dict[str, float | Samples] = {"create": _ms(t0)}
        cid = done.stdout.decode().strip()
        try:
            t["start"] = client.timed_cli("start", cid)
            t["stop"] = client.timed_cli("stop", cid)
            t["rm"] = client.timed_cli("rm", cid)
        finally:
            if "rm" not in t:
                _quiet_remove(client, cid)
        return t


class ContainerOps(Interleaved):
    name = "container-ops"
    help = "docker exec true, docker inspect (CLI) and GET /containers/{id}/json (API)"
    has_floor = True
    floor_note = (
        f"floor: `runc exec true` into a running runc container of {MINIMAL_BUNDLE} (exec "
        f"only); {CANNED_NOTE}"
    )
    canned_container = "wb-ops-floor"

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("exec", "docker exec true", "ms", "lower"),
            FigureSpec("exec-cli", "docker exec true, CLI alone (canned answers)", "ms",
                       "lower"),
            FigureSpec("inspect", "docker inspect", "ms", "lower"),
            FigureSpec("inspect-api", "GET /containers/{id}/json", "ms", "lower"),
        ]  # fmt: skip

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == FLOOR:
            b = ctx.minimal_bundle()
            b.write_spec(STOPPABLE_CMD)
            floor: dict[str, Any] = {"bundle": b, "cid": b.start_sleeper()}
            try:
                answers = canned.exec_answers(self.canned_container)
                floor["cli"] = CannedCLI(ctx, "floor-exec-cli", answers)
            except BaseException:
                b.delete(floor["cid"])
                raise
            return floor
        client = _require_containers(ctx, target)
        cid = client.create(list(STOPPABLE_CMD), name=f"wb-ops-{target}")
        state: dict[str, Any] = {"client": client, "cid": cid, "na": {}}
        try:
            client.require("GET", f"/containers/{cid}/json")
            try:
                client.start(cid)
                client.require("POST", f"/containers/{cid}/exec", {"Cmd": ["true"]})
            except NotImplementedByEngine as e:
                state["na"]["exec"] = Outcome.na(str(e))
        except BaseException:
            _quiet_remove(client, cid)
            raise
        return state

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        cid: str = state["cid"]
        if target == FLOOR:
            return {
                "exec": state["bundle"].exec_true(cid),
                "exec-cli": state["cli"].timed("exec", self.canned_container, "true"),
            }
        client: Client = state["client"]
        out: dict[str, float | Samples] = {"inspect": client.timed_cli("inspect", cid)}
        per_round = max(5, ctx.params.api_samples // max(ctx.params.samples, 1))
        out["inspect-api"] = httpclient.measure_latency_ms(
            client.sock, f"/containers/{cid}/json", per_round
        )
        if "exec" not in state["na"]:
            out["exec"] = client.timed_cli("exec", cid, "true")
        return out

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        if target == FLOOR:
            state["bundle"].delete(state["cid"])
            state["cli"].close()
        else:
            _quiet_remove(state["client"], state["cid"])


class Logs(Group):
    name = "logs"
    help = "a container writing N MB to stdout: time to exit, then docker logs read MB/s"
    has_floor = True
    floor_note = "floor: the same busybox pipeline into a file / cat of that file"

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("write", f"logs: container writes {p.logs_mb} MB, run to exit", "s",
                       "lower"),
            FigureSpec("read", f"logs: docker logs of {p.logs_mb} MB", "MB/s", "higher"),
        ]  # fmt: skip

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        client = _require_containers(ctx, engine)
        nbytes = ctx.params.logs_mb * 1_000_000
        writes: Samples = []
        reads: Samples = []
        for _ in range(ctx.params.logs_samples):
            cid = client.create(log_writer_cmd(nbytes))
            try:
                client.require("GET", f"/containers/{cid}/logs?stdout=1&tail=1")
                t0 = time.perf_counter()
                client.start(cid)
                code = client.wait(cid)
                writes.append(time.perf_counter() - t0)
                if code != 0:
                    raise APIError(f"log writer exited {code}")
                t0 = time.perf_counter()
                got = _count_cli_stdout(client, "logs", cid)
                secs = time.perf_counter() - t0
                if got != nbytes:
                    raise APIError(f"docker logs returned {got} bytes, expected {nbytes}")
                reads.append(nbytes / 1e6 / secs)
            finally:
                with contextlib.suppress(Exception):
                    client.remove(cid)
        return {"write": writes, "read": reads}

    def on_floor(self, ctx: Ctx) -> Result:
        nbytes = ctx.params.logs_mb * 1_000_000
        writes: Samples = []
        reads: Samples = []
        for _ in range(ctx.params.logs_samples):
            w, r = log_floor_ms(nbytes, ctx.workdir)
            writes.append(w / 1000.0)
            reads.append(nbytes / 1e6 / (r / 1000.0))
        return {"write": writes, "read": reads}


def _count_cli_stdout(client: Client, *args: str) -> int:
    """Run a docker CLI command, count the bytes it writes to stdout."""
    proc = subprocess.Popen(
        [client.docker_bin, "-H", f"unix://{client.sock}", *args],
        env=client.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    n = 0
    assert proc.stdout is not None
    with proc.stdout:
        for chunk in iter(lambda: proc.stdout.read(1 << 20) if proc.stdout else b"", b""):
            n += len(chunk)
    if proc.wait(timeout=600) != 0:
        raise APIError(f"docker {' '.join(args)}: exit {proc.returncode}")
    return n


class ManyContainers(Group):
    name = "ps"
    help = "docker ps -a and GET /containers/json?all=1 with N created containers"
    has_floor = True
    floor_note = "floor (API only): the trivial asyncio server replaying the same N-entry answer"

    def figures(self, p: Params) -> list[FigureSpec]:
        n = p.ps_containers
        return [
            FigureSpec("ps", f"docker ps -a ({n} containers)", "ms", "lower"),
            FigureSpec("list-api", f"GET /containers/json?all=1 ({n} containers)", "ms",
                       "lower"),
        ]  # fmt: skip

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        client = _require_containers(ctx, engine)
        p = ctx.params
        client.require("GET", "/containers/json")
        n = p.ps_containers
        ctx.log(f"  {engine}: creating {n} containers ...")
        ids: list[str] = []
        try:
            t0 = time.perf_counter()
            ids.extend(parallel(lambda i: client.create(["true"], name=f"wb-ps-{i}"), range(n)))
            ctx.log(f"  {engine}: created {n} in {time.perf_counter() - t0:.1f} s")
            listed = client.cli("ps", "-a", "-q").stdout.split()
            if len(listed) < n:
                raise APIError(f"docker ps -a listed {len(listed)} containers, expected {n}")
            resp = httpclient.fetch_sync(client.sock, "GET", "/containers/json?all=1")
            if engine == "whaled" or "ps" not in ctx.cache:
                ctx.cache["ps"] = resp.raw
            ps = [client.timed_cli("ps", "-a") for _ in range(p.samples)]
            api = httpclient.measure_latency_ms(client.sock, "/containers/json?all=1", p.samples)
        finally:
            t0 = time.perf_counter()
            parallel(lambda cid: _quiet_remove(client, cid), ids)
            ctx.log(f"  {engine}: removed {len(ids)} in {time.perf_counter() - t0:.1f} s")
        return {"ps": ps, "list-api": api}

    def on_floor(self, ctx: Ctx) -> Result:
        raw = ctx.cache.get("ps")
        if raw is None:
            return {}
        srv = FloorServer(ctx.workdir, "floor-ps", {"/_ping": PING_RAW, "/containers/json": raw})
        try:
            srv.start_answering()
            lat = httpclient.measure_latency_ms(
                srv.sock, "/containers/json?all=1", ctx.params.samples
            )
            return {"list-api": lat}
        finally:
            srv.stop()


def _quiet_remove(client: Client, cid: str) -> None:
    with contextlib.suppress(Exception):
        client.remove(cid)


class Memory(Group):
    name = "memory"
    help = "daemon RSS with N running sleep containers; per-container monitor RSS"

    def figures(self, p: Params) -> list[FigureSpec]:
        n = p.mem_containers
        return [
            FigureSpec("daemon", f"daemon RSS, {n} running containers", "MiB", "lower"),
            FigureSpec("growth", "daemon RSS growth per container", "MiB", "lower"),
            FigureSpec("monitor", "monitor RSS per container (conmon | shim)", "MiB", "lower"),
        ]

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        client = _require_containers(ctx, engine)
        eng = ctx.engines[engine]
        p = ctx.params
        n = p.mem_containers
        idle = median(_rss_samples(eng.daemon_rss_mib, p.rss_samples, settle=0.5))
        ids: list[str] = []
        try:
            ctx.log(f"  {engine}: starting {n} sleep containers ...")

            def up(i: int) -> str:
                cid = client.create(["sleep", "100000"], name=f"wb-mem-{i}")
                ids.append(cid)
                client.start(cid)
                return cid

            parallel(up, range(n))
            daemon = _rss_samples(eng.daemon_rss_mib, p.rss_samples, settle=2.0)
            mons: Samples = []
            counts: list[int] = []
            for _ in range(p.rss_samples):
                total, count = eng.monitor_rss_mib()
                counts.append(count)
                mons.append(total / max(count, 1))
            out: dict[str, Samples | Outcome] = {
                "daemon": daemon,
                "growth": [(d - idle) / n for d in daemon],
            }
            if max(counts) == 0:
                out["monitor"] = Outcome.error("no monitor process (conmon / shim) found")
            else:
                out["monitor"] = mons
                if min(counts) != n:
                    ctx.log(f"  {engine}: found {min(counts)}..{max(counts)} monitors for {n}")
        finally:
            t0 = time.perf_counter()
            parallel(lambda cid: _quiet_remove(client, cid), list(ids))
            ctx.log(f"  {engine}: removed {len(ids)} in {time.perf_counter() - t0:.1f} s")
        return out


class Reload(Group):
    name = "reload"
    help = (
        f"config reload latency: SIGHUP -> reload event while {reload_bench.CLIENTS} clients "
        "hammer /_ping and /containers/json (zero failed requests allowed)"
    )

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec(*spec) for spec in reload_bench.FIGURES]

    def on_engine(self, ctx: Ctx, engine: str) -> Result:
        return reload_bench.measure(ctx.engines[engine], quick=ctx.params.quick, log=ctx.log)


COPYUP_MB = 100
COPYUP_SCRIPT = (
    f"mkdir /data && i=0; while [ $i -lt {COPYUP_MB} ]; do "
    "head -c 1048576 /dev/urandom > /data/f$i; i=$((i+1)); done"
)


class Volumes(Interleaved):
    name = "volumes"
    help = (
        "docker run with and without a named volume; first-mount copy-up of a "
        f"{COPYUP_MB} MB image directory (an image VOLUME), MB/s"
    )
    has_floor = False

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("run-novol", "docker run --rm --network none busybox true", "ms", "lower"),
            FigureSpec("run-vol", "the same with -v vol:/x (a named volume)", "ms", "lower"),
            FigureSpec("copyup", f"copy-up of a {COPYUP_MB} MB image VOLUME dir", "MB/s", "higher"),
        ]  # fmt: skip

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        client = _require_containers(ctx, target)
        client.cli("volume", "create", "wb-vol")
        maker = f"wb-copy-maker-{target}"
        client.cli("run", "--name", maker, "--network", "none", "busybox", "sh", "-c",
                   COPYUP_SCRIPT)  # fmt: skip
        try:
            client.cli("commit", "--change", "VOLUME /data", maker, "wb-copy:1")
            client.cli("commit", maker, "wb-nocopy:1")
        finally:
            client.cli("rm", "-f", maker, check=False)
        return {"client": client, "n": 0}

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        client: Client = state["client"]
        base = ("run", "--rm", "--network", "none")
        out: dict[str, float | Samples] = {
            "run-novol": client.timed_cli(*base, "busybox", "true"),
            "run-vol": client.timed_cli(*base, "-v", "wb-vol:/x", "busybox", "true"),
        }
        state["n"] += 1
        plain, copied = f"wb-plain-{state['n']}", f"wb-copied-{state['n']}"
        try:
            t_plain = client.timed_cli("run", "--name", plain, "--network", "none",
                                       "wb-nocopy:1", "true")  # fmt: skip
            t_copy = client.timed_cli("run", "--name", copied, "--network", "none",
                                      "wb-copy:1", "true")  # fmt: skip
        finally:
            client.cli("rm", "-f", "-v", plain, copied, check=False)
        extra_s = (t_copy - t_plain) / 1000.0
        if extra_s > 0:
            out["copyup"] = COPYUP_MB / extra_s
        return out

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        client: Client = state["client"]
        client.cli("rmi", "-f", "wb-copy:1", "wb-nocopy:1", check=False)
        client.cli("volume", "rm", "-f", "wb-vol", check=False)


# --- networking -------------------------------------------------------------------------------

NET_SUBNETS = {"whaled": "10.214.1.0/24", "dockerd": "10.214.2.0/24"}  # floor: 10.214.250.0/24
NET_BYTES = NET_MIB * 1024 * 1024
PIPE_EVERY = 4  # the dd | nc transfer (~5 s) is taken every 4th round only
NO_DEFAULT_BRIDGE = (
    "the bench's dockerd runs with --bridge=none --iptables=false (host firewall untouched): "
    "no default bridge, so -p there publishes nothing; see the --network row"
)


def _server_ip(subnet: str) -> str:
    return subnet.rsplit(".", 1)[0] + ".10"


def _container_pid(client: Client, name: str) -> int:
    out = client.cli("inspect", "--format", "{{.State.Pid}}", name).stdout.decode().strip()
    pid = int(out or 0)
    if pid <= 0:
        raise APIError(f"{name}: no running process (State.Pid {out!r})")
    return pid


def _published_port(client: Client, name: str, port: int) -> int:
    """The host port ``docker port`` shows for ``port``/tcp on 127.0.0.1."""
    out = client.cli("port", name, f"{port}/tcp").stdout.decode().split()
    for hostport in out:
        host, _, p = hostport.rpartition(":")
        if host == "127.0.0.1" and p.isdigit():
            return int(p)
    raise APIError(f"docker port {name} {port}/tcp: {' '.join(out)!r}")


def _wait_reply(host: str, port: int, timeout: float = 15.0) -> None:
    """Until a connect to ``host:port`` gets the one-line answer (a proxy may listen before
    the container's server does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connect_reply_ms(host, port, timeout=2.0)
            return
        except (OSError, FloorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Network(Interleaved):
    name = "network"
    help = (
        f"container-to-container TCP ({NET_MIB} MiB over a user-defined bridge network), "
        "connect + 1-line reply through a port published on 127.0.0.1, docker run with -p "
        "against --network none (target: run-p within 1.1x)"
    )
    has_floor = True
    floor_note = (
        "floor (TCP, connect): two raw network namespaces made by the bench (ip netns, veths "
        "on a bridge wbfloorbr0 of its own, 10.214.250.0/24), the same busybox commands via "
        "`ip netns exec`; the connect floor goes from the host straight to the namespace's "
        "address over that bridge (no proxy, no DNAT)"
    )

    def figures(self, p: Params) -> list[FigureSpec]:
        mib = f"{NET_MIB} MiB"
        return [
            FigureSpec("tcp-throughput", f"TCP container->container {mib} (client run, wall)",
                       "MB/s", "higher"),
            FigureSpec("tcp-stream", f"TCP {mib} timed inside the client", "MB/s", "higher"),
            FigureSpec("tcp-pipe", f"TCP {mib} via dd | nc, inside (CPU-bound)", "MB/s",
                       "higher"),
            FigureSpec("pub-connect", f"connect + reply via -p 127.0.0.1::{PUB_PORT}", "ms",
                       "lower"),
            FigureSpec("run-none", "docker run --rm --network none busybox true", "ms",
                       "lower"),
            FigureSpec("run-p", "docker run --rm -p 127.0.0.1::80 busybox true", "ms", "lower"),
            FigureSpec("run-net", "docker run --rm --network NET busybox true (user bridge)",
                       "ms", "lower"),
            FigureSpec("run-p-net", "the same with -p 127.0.0.1::80", "ms", "lower"),
        ]  # fmt: skip

    def measure_all(self, ctx: Ctx, targets: Sequence[str]) -> dict[str, Result]:
        out = super().measure_all(ctx, targets)
        for t, result in out.items():  # the target: run-p within 1.1x of run-none
            none = result.get("run-none")
            if not isinstance(none, list) or not none:
                continue
            for key in ("run-p", "run-net", "run-p-net"):
                got = result.get(key)
                if isinstance(got, list) and got:
                    ctx.log(f"  {t}: {key} / run-none = {median(got) / median(none):.2f}x "
                            f"({median(got):.1f} / {median(none):.1f} ms, medians)")  # fmt: skip
        return out

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == FLOOR:
            floor = NetnsFloor()
            floor.create()
            try:
                server_ip = floor.ADDRS["a"]
                for cmd, port in ((TCP_SERVER_CMD, TCP_PORT), (PUB_SERVER_CMD, PUB_PORT)):
                    wait_listening(floor.spawn("a", cmd), port)
                _wait_reply(server_ip, PUB_PORT)
            except BaseException:
                floor.cleanup()
                raise
            return {"floor": floor, "server": server_ip, "pub": (server_ip, PUB_PORT),
                    "n": 0, "na": {}}  # fmt: skip
        client = _require_containers(ctx, target)
        subnet = NET_SUBNETS[target]
        busy = routed_overlaps(subnet)
        if busy:
            raise FloorError(f"{subnet} is routed on this host already: {'; '.join(busy)}")
        net, srv, pub = f"wb-net-{target}", f"wb-net-srv-{target}", f"wb-net-pub-{target}"
        state: dict[str, Any] = {"client": client, "net": net, "server": _server_ip(subnet),
                                 "names": [srv, pub], "n": 0, "na": {}}  # fmt: skip
        client.cli("network", "create", "--subnet", subnet, net)
        try:
            client.cli("run", "-d", "--name", srv, "--network", net, "--ip", state["server"],
                       "busybox", *TCP_SERVER_CMD)  # fmt: skip
            client.cli("run", "-d", "--name", pub, "--network", net, "-p",
                       f"127.0.0.1::{PUB_PORT}", "busybox", *PUB_SERVER_CMD)  # fmt: skip
            wait_listening(_container_pid(client, srv), TCP_PORT)
            wait_listening(_container_pid(client, pub), PUB_PORT)
            state["pub"] = ("127.0.0.1", _published_port(client, pub, PUB_PORT))
            _wait_reply(*state["pub"])
        except BaseException:
            self.teardown(ctx, target, state)
            raise
        if isinstance(ctx.engines.get(target), DockerdEngine):
            state["na"]["run-p"] = Outcome.skipped(NO_DEFAULT_BRIDGE)
        return state

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        """One sample of each figure; a figure that fails is reported as an error in its own
        row (``state["na"]``), the others go on."""
        out: dict[str, float | Samples] = {}
        na: dict[str, Outcome] = state["na"]
        state["n"] += 1

        def take(key: str, fn: Callable[[], float | Samples]) -> None:
            if key in na:
                return
            got = attempt(ctx, f"{target} {key}", fn)
            if isinstance(got, Outcome):
                na[key] = got
            else:
                out[key] = got

        take("pub-connect", partial(self._connects, ctx, state["pub"]))
        take("tcp-throughput", partial(self._transfer, ctx, target, state, out))
        if state["n"] % PIPE_EVERY == 2:  # rounds 1, 5, 9, … (0 is the warm-up)
            take("tcp-pipe", partial(self._transfer, ctx, target, state, None))
        if target == FLOOR:
            return out
        client: Client = state["client"]
        base = ("run", "--rm")
        runs = [
            ("run-none", ("--network", "none")),
            ("run-p", ("-p", "127.0.0.1::80")),
            ("run-net", ("--network", state["net"])),
            ("run-p-net", ("--network", state["net"], "-p", "127.0.0.1::80")),
        ]
        # A different one goes first each round: the first follows the transfer (and its
        # containers' namespaces being destroyed by the kernel), each the one before it.
        shift = state["n"] % len(runs)
        for key, flags in runs[shift:] + runs[:shift]:
            take(key, partial(client.timed_cli, *base, *flags, "busybox", "true"))
        return out

    @staticmethod
    def _connects(ctx: Ctx, hostport: tuple[str, int]) -> Samples:
        per_round = max(5, ctx.params.api_samples // max(ctx.params.samples, 1))
        return [connect_reply_ms(*hostport) for _ in range(per_round)]

    @staticmethod
    def _transfer(
        ctx: Ctx,
        target: str,
        state: dict[str, Any],
        direct: dict[str, float | Samples] | None,
    ) -> float:
        """One NET_MIB MiB transfer to the server; MB/s. ``direct`` (a sample's output dict):
        the ``nc -e dd`` client, whose in-container time goes to ``tcp-stream`` there and
        whose wall time is returned (``tcp-throughput``); ``None``: the ``dd | nc`` client,
        its in-container rate returned (``tcp-pipe``)."""
        script = tcp_client_script(state["server"], piped=direct is None)
        if target == FLOOR:
            floor: NetnsFloor = state["floor"]
            wall_ms, text = floor.run("b", ["sh", "-c", script])
        else:
            client: Client = state["client"]
            t0 = time.perf_counter()
            done = client.cli("run", "--rm", "--network", state["net"], "busybox", "sh", "-c",
                              script)  # fmt: skip
            wall_ms = _ms(t0)
            text = done.stdout.decode(errors="replace")
        inside = transfer_seconds(text)
        if direct is None:
            return NET_BYTES / 1e6 / inside
        direct["tcp-stream"] = NET_BYTES / 1e6 / inside
        return NET_BYTES / 1e6 / (wall_ms / 1000.0)

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        if target == FLOOR:
            state["floor"].cleanup()
            return
        client: Client = state["client"]
        client.cli("rm", "-f", *state["names"], check=False)
        client.cli("network", "rm", state["net"], check=False)
        left = client.cli("network", "ls", "-q", "--filter", f"name=^{state['net']}$",
                          check=False).stdout.strip()  # fmt: skip
        if left:
            raise APIError(f"network {state['net']} could not be removed")


GROUPS: tuple[Group, ...] = (
    Startup(),
    IdleRSS(),
    HTTPRate(),
    ImageLoad(),
    Run(),
    Lifecycle(),
    ContainerOps(),
    Logs(),
    ManyContainers(),
    Memory(),
    Reload(),
    Volumes(),
    Network(),
)


def all_groups() -> tuple[Group, ...]:
    """``GROUPS`` and the groups of their own modules (imported here, late: they build on
    this module's classes)."""
    from bench.build import Build
    from bench.compose import Compose
    from bench.distribution import Distribution

    return (*GROUPS, Distribution(), Build(), Compose())


def group_names() -> list[str]:
    return [g.name for g in all_groups()]


def select(only: Sequence[str] | None) -> list[Group]:
    if not only:
        return list(all_groups())
    names = set(only)
    unknown = names - set(group_names())
    if unknown:
        raise ValueError(f"unknown figure group(s): {', '.join(sorted(unknown))}")
    return [g for g in all_groups() if g.name in names]
