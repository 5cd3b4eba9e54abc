"""Reload planning, the transaction helper and the store (pure)."""

from __future__ import annotations

import json

import pytest

from whaled.config.model import Config, FrozenMap, Proxies, RuntimeConfig
from whaled.config.reload import (
    ReloadTransaction,
    config_json_for_log,
    mask_credentials,
    plan_reload,
    reload_event_attributes,
)
from whaled.config.store import ConfigStore


def test_plan_separates_reloadable_from_restart_only() -> None:
    live = Config(debug=False, data_root="/a", labels=())
    candidate = Config(debug=True, data_root="/b", labels=("x=y",))
    plan = plan_reload(live, candidate)
    assert plan.changed == ("debug", "labels")
    assert plan.restart_required == ("data-root",)
    assert plan.new.debug is True and plan.new.labels == ("x=y",)
    assert plan.new.data_root == "/a"  # restart-only keys keep their live value
    assert live.debug is False  # the live snapshot is untouched


def test_plan_of_identical_configs_changes_nothing() -> None:
    plan = plan_reload(Config(), Config())
    assert plan.changed == () and plan.restart_required == ()
    assert plan.new == Config()


def test_transaction_commit_runs_only_commit_actions_in_order() -> None:
    calls: list[str] = []
    txn = ReloadTransaction()
    txn.on_commit(lambda: calls.append("c1"))
    txn.on_rollback(lambda: calls.append("r1"))
    txn.on_commit(lambda: calls.append("c2"))
    txn.commit()
    assert calls == ["c1", "c2"]
    with pytest.raises(RuntimeError):
        txn.rollback()


def test_transaction_rollback_runs_only_rollback_actions_in_reverse() -> None:
    calls: list[str] = []
    txn = ReloadTransaction()
    txn.on_rollback(lambda: calls.append("r1"))
    txn.on_commit(lambda: calls.append("c1"))
    txn.on_rollback(lambda: calls.append("r2"))
    txn.rollback()
    assert calls == ["r2", "r1"]


def test_a_failing_action_does_not_skip_the_others() -> None:
    calls: list[str] = []
    txn = ReloadTransaction()

    def boom() -> None:
        raise ValueError("x")

    txn.on_commit(boom)
    txn.on_commit(lambda: calls.append("after"))
    txn.commit()
    assert calls == ["after"]


def test_event_attributes_carry_the_new_values() -> None:
    live = Config()
    candidate = Config(
        debug=True,
        labels=("a=b",),
        max_concurrent_downloads=9,
        runtimes=FrozenMap({"z": RuntimeConfig(path="/z"), "c": RuntimeConfig(path="/c")}),
    )
    attrs = reload_event_attributes(plan_reload(live, candidate), "host1")
    assert attrs["debug"] == "true"
    assert attrs["labels"] == '["a=b"]'
    assert attrs["max-concurrent-downloads"] == "9"
    assert attrs["runtimes"] == "c:/c z:/z"
    assert attrs["name"] == "host1"
    assert attrs["changed"] == "debug,labels,runtimes,max-concurrent-downloads"
    assert "data-root" not in attrs


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("http://user:pw@proxy:3128", "http://xxxxx:xxxxx@proxy:3128"),
        ("socks5://user@proxy:1080", "socks5://xxxxx:xxxxx@proxy:1080"),
        ("user:pw@proxy:3128", "xxxxx:xxxxx@proxy:3128"),  # no scheme
        ("http://proxy:3128", "http://proxy:3128"),
        ("proxy:3128", "proxy:3128"),
        ("", ""),
    ],
)
def test_mask_credentials(raw: str, masked: str) -> None:
    assert mask_credentials(raw) == masked


def test_log_masks_proxy_credentials() -> None:
    cfg = Config(proxies=Proxies(http_proxy="http://u:secret@p:1", no_proxy="localhost"))
    text = config_json_for_log(cfg)
    assert "secret" not in text
    assert json.loads(text)["proxies"]["http-proxy"] == "http://xxxxx:xxxxx@p:1"


def test_store_swaps_in_one_step() -> None:
    first, second = Config(), Config(debug=True)
    store = ConfigStore(first)
    taken = store.current()
    assert store.swap(second) is first
    assert store.current() is second
    assert taken is first  # a reader keeps the snapshot it took
    assert store.generation == 1
