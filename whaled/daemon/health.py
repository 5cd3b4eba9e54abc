"""Healthchecks: one probe loop per running container that has a healthcheck.

Each probe is an exec session in the container (the container's process settings, the
probe's command) whose output is collected through its attach stream; a probe that outlives
``Timeout`` is killed and counts as exit code -1. Results go through the pure rules of
``whaled.container.health``; a status change is persisted and announced as the
``health_status: <status>`` event, like dockerd's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time

from whaled.container.events import ContainerEvents
from whaled.container.health import (
    HealthConfig,
    next_probe_delay,
    record_result,
    reset_for_start,
    timeout_output,
)
from whaled.container.model import Container
from whaled.container.state import Status
from whaled.container.store import ContainerStore
from whaled.container.times import now_rfc3339
from whaled.daemon.execs import ExecService, ExecSession
from whaled.daemon.runs import Run
from whaled.errors import WhaledError
from whaled.runtime.backend.api import AttachStream

log = logging.getLogger("whaled.health")

#: Probe output kept while collecting (the record keeps less, see ``limit_output``).
_COLLECT_LIMIT = 64 * 1024


class HealthMonitor:
    def __init__(
        self, *, store: ContainerStore, events: ContainerEvents, execs: ExecService
    ) -> None:
        self.store = store
        self.events = events
        self.execs = execs

    async def run(self, c: Container, run: Run) -> None:
        cfg = HealthConfig.from_api(c.config.get("Healthcheck"))
        if cfg is None:
            return
        c.state.health = reset_for_start(c.state.health)
        started = time.monotonic()
        while run.exit_status is None:
            elapsed = time.monotonic() - started
            in_start = elapsed < cfg.start_period
            status = c.state.health.status if c.state.health is not None else "starting"
            delay = next_probe_delay(
                cfg,
                in_start,
                status=status,
                start_period_left=cfg.start_period - elapsed if in_start else None,
            )
            await asyncio.sleep(delay)
            if run.exit_status is not None or c.state.status != Status.RUNNING:
                if run.exit_status is not None:
                    return
                continue
            start = now_rfc3339()
            code, output = await self._probe(c, run, cfg)
            if run.exit_status is not None or c.state.health is None:
                return
            changed = record_result(
                c.state.health,
                exit_code=code,
                output=output,
                start=start,
                end=now_rfc3339(),
                retries=cfg.retries,
                in_start_period=time.monotonic() - started < cfg.start_period,
            )
            with contextlib.suppress(OSError):
                self.store.save(c)
            if changed:
                self.events.emit(c, f"health_status: {c.state.health.status}")

    async def _probe(self, c: Container, run: Run, cfg: HealthConfig) -> tuple[int, bytes]:
        if not cfg.argv:
            return -1, b"no healthcheck command"
        session = ExecSession(
            id=secrets.token_hex(32),
            container_id=c.id,
            cmd=list(cfg.argv),
            tty=False,
            attach_stdin=False,
            attach_stdout=True,
            attach_stderr=True,
            env=[],
            user="",
            working_dir="",
            privileged=False,
            detach_keys="",
        )
        output = bytearray()
        reader: asyncio.Task[None] | None = None

        async def collect(stream: AttachStream) -> None:
            nonlocal reader

            async def read() -> None:
                try:
                    while (chunk := await stream.recv()) is not None:
                        if len(output) < _COLLECT_LIMIT:
                            output.extend(chunk[1])
                finally:
                    stream.close()

            reader = asyncio.ensure_future(read())

        try:
            spec = await asyncio.to_thread(self.execs.process_spec, c, session)
            process = await run.task.exec(session.id, spec, attach_ready=collect)
        except WhaledError as e:
            return -1, str(e).encode()
        try:
            status = await asyncio.wait_for(process.wait(), cfg.timeout)
            if reader is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 1.0)
            return status.exit_code, bytes(output)
        except TimeoutError:
            with contextlib.suppress(WhaledError, OSError):
                await process.kill(signal.SIGKILL)
            return -1, timeout_output(
                cfg.timeout_ns, bytes(output).decode(errors="replace")
            ).encode()
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
            with contextlib.suppress(WhaledError, OSError, TimeoutError):
                await asyncio.wait_for(process.wait(), 5.0)
                await process.release()
