"""The reload use case: SIGHUP (or ``whaled reload``) → re-read, validate, apply all or nothing.

1. Build the candidate config exactly as at start (flags + the file as it is now) and
   validate it with the start-up rules. Failure: nothing changes.
2. Plan the change (pure), then let every registered reloader prepare it inside one
   ``ReloadTransaction``; a reloader may refuse (raise), which rolls everything back.
   A reloader may be a coroutine function (its I/O runs off the event loop); readers are
   never blocked meanwhile: they keep getting the live snapshot until the swap.
3. Success: swap the new snapshot in with one assignment, run the commit actions, log the
   new configuration (proxy credentials masked) and emit the ``daemon`` ``reload`` event.

Every outcome is also emitted as an event, so ``whaled reload`` can wait for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from whaled.config.model import Config
from whaled.config.reload import (
    ReloadPlan,
    ReloadTransaction,
    config_json_for_log,
    plan_reload,
    reload_event_attributes,
)
from whaled.config.store import ConfigStore
from whaled.errors import WhaledError
from whaled.events import EventBus

log = logging.getLogger("whaled.reload")

# A reloader prepares one setting: it reads plan.new / plan.live, may raise to refuse the
# reload, and registers commit/rollback side effects on the transaction. It may return an
# awaitable (an ``async`` reloader), which is awaited before the next reloader runs.
Reloader = Callable[[ReloadPlan, ReloadTransaction], Awaitable[None] | None]
# Builds and validates the candidate config with the start-up rules.
CandidateLoader = Callable[[], Config]

RELOAD_ACTION = "reload"
RELOAD_FAILED_ACTION = "reload_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadOutcome:
    ok: bool
    plan: ReloadPlan | None = None
    error: str = ""


class ReloadService:
    def __init__(
        self,
        *,
        store: ConfigStore,
        events: EventBus,
        load_candidate: CandidateLoader,
        engine_id: str,
        name: str,
    ) -> None:
        self._store = store
        self._events = events
        self._load_candidate = load_candidate
        self._engine_id = engine_id
        self._name = name
        self._reloaders: list[Reloader] = []
        self._lock = asyncio.Lock()

    def add_reloader(self, reloader: Reloader) -> None:
        self._reloaders.append(reloader)

    async def reload(self) -> ReloadOutcome:
        async with self._lock:  # one reload at a time; readers never wait
            try:
                # Reading the file and checking paths is I/O: off the event loop.
                candidate = await asyncio.to_thread(self._load_candidate)
            except WhaledError as e:
                return self._failed(str(e))
            except Exception as e:
                log.exception("loading the configuration failed")
                return self._failed(f"internal error: {e}")
            plan = plan_reload(self._store.current(), candidate)
            txn = ReloadTransaction()
            try:
                for reloader in self._reloaders:
                    result = reloader(plan, txn)
                    if inspect.isawaitable(result):
                        await result
            except WhaledError as e:
                txn.rollback()
                return self._failed(str(e))
            except Exception as e:
                log.exception("reloader failed")
                txn.rollback()
                return self._failed(f"internal error: {e}")
            except BaseException:  # cancelled (daemon shutdown): nothing was swapped in
                txn.rollback()
                raise
            # Only this task swaps (the lock), and the live snapshot cannot have changed
            # since the plan was made from it.
            self._store.swap(plan.new)
            txn.commit()
            log.info("Reloaded configuration: %s", config_json_for_log(plan.new))
            if plan.restart_required:
                log.warning(
                    "Changed in the config file but only applied at restart: %s",
                    ", ".join(plan.restart_required),
                )
            self._events.emit(
                "daemon", RELOAD_ACTION, self._engine_id, reload_event_attributes(plan, self._name)
            )
            return ReloadOutcome(ok=True, plan=plan)

    def _failed(self, reason: str) -> ReloadOutcome:
        log.error("Error reloading the configuration, nothing changed: %s", reason)
        self._events.emit(
            "daemon", RELOAD_FAILED_ACTION, self._engine_id, {"name": self._name, "error": reason}
        )
        return ReloadOutcome(ok=False, error=reason)
