"""ReloadService: load → plan → reloaders in one transaction → swap or roll back (no I/O
beyond what the fakes do)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from whaled.config.model import Config
from whaled.config.reload import ReloadPlan, ReloadTransaction
from whaled.config.store import ConfigStore
from whaled.daemon.reload import RELOAD_ACTION, RELOAD_FAILED_ACTION, ReloadService
from whaled.errors import ConfigError
from whaled.events import Event, EventBus


def service(
    live: Config, load: Callable[[], Config]
) -> tuple[ReloadService, ConfigStore, EventBus]:
    store = ConfigStore(live)
    bus = EventBus()
    svc = ReloadService(store=store, events=bus, load_candidate=load, engine_id="E", name="host")
    return svc, store, bus


def emitted(bus: EventBus) -> list[Event]:
    return bus.history()


def test_success_swaps_commits_and_emits_the_new_values() -> None:
    live, new = Config(), Config(labels=("a=b",), debug=True)
    svc, store, bus = service(live, lambda: new)
    calls: list[str] = []

    def reloader(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        assert plan.changed == ("debug", "labels")
        calls.append("prepare")
        txn.on_commit(lambda: calls.append(f"commit sees labels={store.current().labels}"))
        txn.on_rollback(lambda: calls.append("rollback"))

    svc.add_reloader(reloader)
    outcome = asyncio.run(svc.reload())
    assert outcome.ok and store.current() == new and store.generation == 1
    assert calls == ["prepare", "commit sees labels=('a=b',)"]  # commit runs after the swap
    assert [(e.type, e.action, e.actor_id) for e in emitted(bus)] == [
        ("daemon", RELOAD_ACTION, "E")
    ]
    assert (
        emitted(bus)[0].attributes["labels"] == '["a=b"]'
        and emitted(bus)[0].attributes["debug"] == "true"
    )


def test_a_refusing_reloader_rolls_back_everything_in_reverse() -> None:
    live = Config()
    svc, store, bus = service(live, lambda: Config(labels=("x=1",)))
    calls: list[str] = []

    def first(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        txn.on_rollback(lambda: calls.append("undo first"))
        txn.on_commit(lambda: calls.append("commit first"))

    async def second(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        await asyncio.sleep(0)
        txn.on_rollback(lambda: calls.append("undo second"))
        raise ConfigError("second says no")

    def third(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        calls.append("third ran")

    for r in (first, second, third):
        svc.add_reloader(r)
    outcome = asyncio.run(svc.reload())
    assert not outcome.ok and outcome.error == "second says no"
    assert store.current() is live and store.generation == 0
    assert calls == ["undo second", "undo first"]
    assert [e.action for e in emitted(bus)] == [RELOAD_FAILED_ACTION]
    assert emitted(bus)[0].attributes == {"name": "host", "error": "second says no"}


def test_an_unexpected_error_is_a_failed_reload_not_a_crash() -> None:
    live = Config()
    svc, store, bus = service(live, lambda: Config(debug=True))

    def broken(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        raise KeyError("oops")

    svc.add_reloader(broken)
    outcome = asyncio.run(svc.reload())
    assert not outcome.ok and outcome.error.startswith("internal error")
    assert store.current() is live
    assert [e.action for e in emitted(bus)] == [RELOAD_FAILED_ACTION]


@pytest.mark.parametrize("error", [ConfigError("invalid JSON in /f"), OSError("disk gone")])
def test_a_candidate_that_does_not_load_changes_nothing(error: Exception) -> None:
    def load() -> Config:
        raise error

    live = Config()
    svc, store, bus = service(live, load)
    ran: list[str] = []
    svc.add_reloader(lambda plan, txn: ran.append("x"))
    outcome = asyncio.run(svc.reload())
    assert not outcome.ok and str(error) in outcome.error
    assert ran == [] and store.current() is live
    assert [e.action for e in emitted(bus)] == [RELOAD_FAILED_ACTION]


def test_readers_see_the_old_snapshot_until_the_swap_and_reloads_do_not_overlap() -> None:
    live = Config()
    candidates = iter([Config(labels=("n=1",)), Config(labels=("n=2",))])
    svc, store, bus = service(live, lambda: next(candidates))
    active = 0
    overlapped = False
    observed: list[tuple[str, ...]] = []

    async def slow(plan: ReloadPlan, txn: ReloadTransaction) -> None:
        nonlocal active, overlapped
        active += 1
        overlapped = overlapped or active > 1
        await asyncio.sleep(0.01)
        observed.append(store.current().labels)  # mid-reload: still the live snapshot
        active -= 1

    svc.add_reloader(slow)

    async def main() -> None:
        await asyncio.gather(svc.reload(), svc.reload())

    asyncio.run(main())
    assert not overlapped
    assert observed == [(), ("n=1",)]
    assert store.current().labels == ("n=2",) and store.generation == 2
    assert [e.action for e in emitted(bus)] == [RELOAD_ACTION, RELOAD_ACTION]
