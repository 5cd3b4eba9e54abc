"""The composition root: builds every service explicitly and runs the daemon.

Order at start: pidfile (refuse a second daemon) → state dirs → engine id → config store,
event bus, host facts, services → aiohttp app → listeners → signal handlers. Shutdown runs
the reverse: stop listening, close the event bus (streaming /events end), aiohttp's
on_shutdown/cleanup contexts (services register theirs; the container service will stop
containers there within ``shutdown-timeout`` unless live-restore is on), remove sockets,
release the pidfile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid

import uvloop
from aiohttp import web

from whaled.api import server
from whaled.api.app import LANE_KEY, build_app
from whaled.api.early import EarlyStart
from whaled.api.routers import build as build_routes
from whaled.api.routers import containers as containers_routes
from whaled.api.routers import distribution as distribution_routes
from whaled.api.routers import events as events_routes
from whaled.api.routers import exec as exec_routes
from whaled.api.routers import images as images_routes
from whaled.api.routers import networks as networks_routes
from whaled.api.routers import swarm as swarm_routes
from whaled.api.routers import system as system_routes
from whaled.api.routers import volumes as volumes_routes
from whaled.api.uploads import install_connection_tap
from whaled.config.model import Config
from whaled.config.reload import ReloadPlan, ReloadTransaction
from whaled.config.source import StartupSource, load_and_validate
from whaled.config.store import ConfigStore
from whaled.container.events import ContainerEvents
from whaled.container.state import is_running
from whaled.container.store import ContainerStore
from whaled.daemon.builder import BuildService
from whaled.daemon.builder import clear_tmp as clear_build_tmp
from whaled.daemon.bundle import RunFiles, SpecAssembler
from whaled.daemon.container_io import ContainerIO
from whaled.daemon.containers import ContainerService
from whaled.daemon.create import ContainerCreator
from whaled.daemon.daemon import Daemon
from whaled.daemon.distribution import DistributionService, certs_dirs
from whaled.daemon.environment import Environment
from whaled.daemon.execs import ExecService
from whaled.daemon.health import HealthMonitor
from whaled.daemon.images import ImageService
from whaled.daemon.networks import NetworkService
from whaled.daemon.reload import ReloadService
from whaled.daemon.restore import ContainerRestorer
from whaled.daemon.runs import Runs
from whaled.daemon.runtimes import RuntimeReloader, builtin_runtime_paths
from whaled.daemon.system import ServiceInventory, SystemService, gather_host_facts
from whaled.daemon.tasks import BackgroundTasks
from whaled.daemon.trash import Trash
from whaled.daemon.volumes import VolumeService, volume_users
from whaled.errors import NotFound, WhaledError
from whaled.events import EventBus
from whaled.host.sysinfo import read_capability_bounding_mask
from whaled.image.stores import open_image_stores
from whaled.logsetup import apply_level
from whaled.network.store import NetworkStore
from whaled.osutil.atomic import atomic_write
from whaled.osutil.tree import sweep
from whaled.runtime.backend.conmon import ConmonBackend
from whaled.runtime.defaults import capabilities_from_mask
from whaled.runtime.wrappers import remove_unreferenced
from whaled.volume.store import VolumeStore

log = logging.getLogger("whaled")

# Seconds aiohttp waits for in-flight requests after the listeners closed.
REQUEST_DRAIN_SECONDS = 5.0


def load_engine_id(data_root: str) -> str:
    """The daemon's stable ID (dockerd's engine-id), created on first start."""
    sweep(data_root)  # temp files of a write a crash interrupted
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    value = str(uuid.uuid4())
    atomic_write(path, value.encode() + b"\n", 0o600)
    return value


def capability_bounding() -> frozenset[str] | None:
    """The daemon's capability bounding set (what a container or exec can be given)."""
    mask = read_capability_bounding_mask()
    return capabilities_from_mask(mask) if mask is not None else None


def _log_level_reloader(plan: ReloadPlan, txn: ReloadTransaction) -> None:
    if "debug" in plan.changed:
        txn.on_commit(lambda: apply_level(plan.new))


async def serve(cfg: Config, startup: StartupSource, early: EarlyStart) -> int:
    """Run the daemon on what ``early`` set up (pidfile held, listeners open, pings answered
    meanwhile) until SIGTERM/SIGINT."""
    runner: web.AppRunner | None = None
    tasks = BackgroundTasks()
    restorer: ContainerRestorer | None = None
    networks: NetworkService | None = None
    store: ConfigStore | None = None
    try:
        os.makedirs(cfg.data_root, mode=0o711, exist_ok=True)
        os.makedirs(cfg.exec_root, mode=0o700, exist_ok=True)
        engine_id = load_engine_id(cfg.data_root)
        store = ConfigStore(cfg)
        bus = EventBus()
        facts = await gather_host_facts(cfg.data_root)
        # The image stores' start-up work (unreferenced layers, scratch dirs) runs here.
        image_stores = await asyncio.to_thread(open_image_stores, cfg.data_root)
        conmon = facts.binaries.get("conmon")
        container_store = ContainerStore(cfg.data_root)
        container_events = ContainerEvents(bus)
        volumes = VolumeService(
            store=await asyncio.to_thread(VolumeStore, cfg.data_root),
            events=bus,
            users=lambda name: volume_users(
                [(c.id, c.mount_points) for c in container_store.all()], name
            ),
        )
        networks = NetworkService(
            store=await asyncio.to_thread(NetworkStore, cfg.data_root, cfg.exec_root),
            events=bus,
            exec_root=cfg.exec_root,
            container_name=lambda cid: _container_name(container_store, cid),
        )
        await networks.start(cfg)
        runs = Runs(tasks)
        bounding = capability_bounding()
        backend = ConmonBackend(
            conmon_path=conmon.path if conmon is not None and conmon.path else "conmon",
            log_level="debug" if cfg.debug else "error",
        )
        run_files = RunFiles(cfg.exec_root, builtin_runtime_paths(facts.binaries))
        # Built in dependency order: the exec and health services need the container
        # records and the run table, the container service their hooks.
        execs = ExecService(
            store=container_store,
            runs=runs,
            events=container_events,
            tasks=tasks,
            capability_bounding=bounding,
        )
        health = HealthMonitor(store=container_store, events=container_events, execs=execs)
        trash = Trash(
            store=container_store, layers=image_stores.layers, files=run_files, tasks=tasks
        )
        specs = SpecAssembler(
            facts=facts, capability_bounding=bounding, store=container_store, runs=runs
        )
        containers = ContainerService(
            store=container_store,
            runs=runs,
            files=run_files,
            specs=specs,
            creator=ContainerCreator(
                store=container_store,
                runs=runs,
                images=image_stores,
                layers=image_stores.layers,
                events=container_events,
                facts=facts,
                files=run_files,
                specs=specs,
                volumes=volumes,
                networks=networks,
            ),
            layers=image_stores.layers,
            trash=trash,
            events=container_events,
            facts=facts,
            config=store.current,
            backend=backend,
            tasks=tasks,
            environment=Environment(
                layers=image_stores.layers, specs=specs, volumes=volumes, networks=networks
            ),
            health_runner=health.run,
            on_run_ended=execs.drop_for,
        )
        images = ImageService(stores=image_stores, events=bus, usage=containers.image_users)
        restorer = ContainerRestorer(
            containers=containers,
            store=container_store,
            runs=runs,
            layers=image_stores.layers,
            backend=backend,
            files=run_files,
            trash=trash,
            tasks=tasks,
        )
        # Start-up order (DESIGN §3): adopt live containers, then delete the runtime
        # wrappers none of them is locked to, then start what the restart policies want.
        restart = await restorer.restore()
        running = {c.id for c in container_store.all() if is_running(c.state.status)}
        await asyncio.to_thread(networks.sweep_sandboxes, running)
        await asyncio.to_thread(networks.drop_orphans, {c.id for c in container_store.all()})
        await asyncio.to_thread(volumes.drop_orphans, {c.id for c in container_store.all()})
        await networks.resume_ports(running)
        removed = await asyncio.to_thread(
            remove_unreferenced, run_files.wrappers_dir, restorer.live_runtime_paths()
        )
        for path in removed:
            log.info("removed stale runtime wrapper %s", path)
        system = SystemService(
            engine_id=engine_id,
            facts=facts,
            inventory=ServiceInventory(images, containers),
            events_listeners=lambda: bus.subscriber_count,
        )
        reloader = ReloadService(
            store=store,
            events=bus,
            load_candidate=lambda: load_and_validate(startup),
            engine_id=engine_id,
            name=facts.host.hostname,
        )
        reloader.add_reloader(_log_level_reloader)
        reloader.add_reloader(
            RuntimeReloader(
                builtin_paths=builtin_runtime_paths(facts.binaries),
                wrappers_dir=run_files.wrappers_dir,
            )
        )
        container_io = ContainerIO(
            containers=containers,
            execs=execs,
            runs=runs,
            images=images,
            layers=image_stores.layers,
            events=container_events,
            facts=facts,
            tasks=tasks,
            networks=networks,
        )
        distribution = DistributionService(
            stores=image_stores,
            events=bus,
            config=store.current,
            certs_dirs=certs_dirs(startup.config_file),
        )
        builder_tmp = os.path.join(cfg.data_root, "builder", "tmp")
        await asyncio.to_thread(clear_build_tmp, builder_tmp)
        daemon = Daemon(
            store=store,
            events=bus,
            system=system,
            reloader=reloader,
            images=images,
            volumes=volumes,
            networks=networks,
            distribution=distribution,
            containers=containers,
            execs=execs,
            container_io=container_io,
            builder=BuildService(
                stores=image_stores,
                images=images,
                containers=containers,
                container_io=container_io,
                distribution=distribution,
                tmp_root=builder_tmp,
            ),
        )

        limits = early.limits
        app = build_app(
            daemon,
            [
                system_routes.register,
                events_routes.register,
                images_routes.register,
                distribution_routes.register,
                volumes_routes.register,
                networks_routes.register,
                containers_routes.register,
                exec_routes.register,
                build_routes.register,
                swarm_routes.register,
            ],
            limits,
        )

        async def close_event_streams(_: web.Application) -> None:
            bus.close()

        app.on_shutdown.append(close_event_streams)
        server.quiet_bad_requests()
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=REQUEST_DRAIN_SECONDS,
            # aiohttp's keep-alive timer runs from the connection's start and from each
            # response: a head that has not arrived (or is half-sent) by then is closed.
            keepalive_timeout=limits.head_timeout,
        )
        await runner.setup()
        assert runner.server is not None
        # stdin sent before a 101 is not lost; uploads skip aiohttp's body parser
        install_connection_tap(runner.server, app[LANE_KEY])
        gate = server.ConnectionGate(limits.max_connections)
        sites: dict[int, server.GatedSite] = {}
        for _, sock, context in early.listeners:
            sites[id(sock)] = server.GatedSite(runner, sock, gate, ssl_context=context)
        if early.handover_delay > 0:  # tests only: keep the start-up window open
            await asyncio.sleep(early.handover_delay)
        # The early responder stops; what it holds is served as if accepted just now.
        for (_, sock, _), conn in early.handover():
            sites[id(sock)].adopt(conn)
        for url, sock, _ in early.listeners:
            await sites[id(sock)].start()
            log.info("API listen on %s", url)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def request_stop(signame: str) -> None:
            log.info("Processing signal '%s'", signame)
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, request_stop, "terminated")
        loop.add_signal_handler(signal.SIGINT, request_stop, "interrupt")
        loop.add_signal_handler(signal.SIGHUP, lambda: tasks.spawn("reload", reloader.reload()))
        for signum in early.pending_signals():  # sent while the daemon was starting
            if signum == signal.SIGHUP:
                tasks.spawn("reload", reloader.reload())
            else:
                request_stop("terminated" if signum == signal.SIGTERM else "interrupt")
        tasks.spawn("restart-containers", restorer.start_restored(store.current(), restart))
        log.info("Daemon has completed initialization")
        await stop.wait()
        log.info("Stopping daemon")
        # The handlers stay installed through the shutdown: a second SIGTERM/SIGINT must
        # not kill the daemon half-way through its cleanup.
        return 0
    finally:
        if restorer is not None and store is not None:
            try:
                await restorer.shutdown(store.current())
            except Exception:
                log.exception("stopping containers at shutdown failed")
        if networks is not None and store is not None:
            try:
                await networks.shutdown(live_restore=store.current().live_restore)
            except Exception:
                log.exception("network clean-up at shutdown failed")
        await tasks.cancel_all()
        if runner is not None:
            await runner.cleanup()
        early.close()
        early.pidfile.release()
        log.info("Daemon shutdown complete")


def run_daemon(cfg: Config, startup: StartupSource, early: EarlyStart) -> int:
    """The daemon's life after :meth:`EarlyStart.begin` (logging is set up already)."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(cfg, startup, early))
    except WhaledError as e:
        log.error("%s", e)
        return 1


def _container_name(store: ContainerStore, cid: str) -> str | None:
    try:
        return store.get(cid).name
    except NotFound:
        return None
