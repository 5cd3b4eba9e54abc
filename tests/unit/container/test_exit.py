from __future__ import annotations

from typing import Any

import pytest

from whaled.container.exit import ExitEvent, ExitPlan, apply_exit, plan_exit
from whaled.container.model import Container, Health
from whaled.container.state import Status

FINISHED = "2026-01-02T03:04:05.000000000Z"


def record(
    *,
    status: Status = Status.RUNNING,
    policy: str = "no",
    max_retry: int = 0,
    auto_remove: bool = False,
    manually_stopped: bool = False,
    restart_count: int = 0,
) -> Container:
    c = Container(
        id="a" * 64,
        name="c",
        created=FINISHED,
        image_id="sha256:" + "b" * 64,
        image_ref="busybox",
        path="sh",
        args=[],
        config={},
        host_config={
            "RestartPolicy": {"Name": policy, "MaximumRetryCount": max_retry},
            "AutoRemove": auto_remove,
        },
        restart_count=restart_count,
        manually_stopped=manually_stopped,
    )
    c.state.status = status
    c.state.pid = 1234
    return c


def plan(c: Container, **kw: Any) -> ExitPlan:
    args: dict[str, Any] = {
        "exit_code": 0,
        "oom_killed": False,
        "finished_at": FINISHED,
        "removing": False,
        "record_exists": True,
        "daemon_shutting_down": False,
    }
    args.update(kw)
    return plan_exit(c, **args)


def test_plain_exit_is_recorded_and_announced() -> None:
    p = plan(record(), exit_code=3)
    assert p.status == Status.EXITED
    assert not p.restart and not p.auto_remove and p.save
    assert p.events == (ExitEvent(action="die", attributes={"exitCode": "3"}),)


def test_oom_comes_before_die() -> None:
    p = plan(record(), exit_code=137, oom_killed=True)
    assert [e.action for e in p.events] == ["oom", "die"]
    assert p.events[1].attributes == {"exitCode": "137"}
    assert p.oom_killed


def test_paused_container_exits_too() -> None:
    assert plan(record(status=Status.PAUSED)).status == Status.EXITED


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_policy_restarts(policy: str) -> None:
    p = plan(record(policy=policy), exit_code=0)
    assert p.restart and p.status == Status.RESTARTING and p.save
    assert not p.auto_remove


def test_on_failure_counts_retries() -> None:
    assert plan(record(policy="on-failure"), exit_code=1).restart
    assert not plan(record(policy="on-failure"), exit_code=0).restart
    assert plan(record(policy="on-failure", max_retry=2, restart_count=1), exit_code=1).restart
    p = plan(record(policy="on-failure", max_retry=2, restart_count=2), exit_code=1)
    assert not p.restart and p.status == Status.EXITED


def test_stopped_by_user_is_not_restarted() -> None:
    p = plan(record(policy="always", manually_stopped=True))
    assert not p.restart and p.status == Status.EXITED


def test_daemon_shutting_down_restarts_nothing() -> None:
    p = plan(record(policy="always"), daemon_shutting_down=True)
    assert not p.restart and p.status == Status.EXITED and p.save


def test_removal_under_way_neither_restarts_nor_removes_again() -> None:
    p = plan(record(policy="always", auto_remove=True), removing=True)
    assert not p.restart and not p.auto_remove and p.status == Status.EXITED


def test_auto_remove_skips_the_record_write() -> None:
    p = plan(record(auto_remove=True), exit_code=1)
    assert p.auto_remove and not p.save and not p.restart
    assert [e.action for e in p.events] == ["die"]


def test_gone_record_is_not_written() -> None:
    assert not plan(record(), record_exists=False).save


def test_plan_leaves_the_record_alone_apply_writes_it() -> None:
    c = record(policy="always")
    c.state.health = Health(status="healthy")
    p = plan(c, exit_code=2, oom_killed=True)
    assert c.state.status == Status.RUNNING and c.state.pid == 1234
    apply_exit(c, p)
    assert c.state.status == Status.RESTARTING
    assert c.state.pid == 0
    assert c.state.exit_code == 2 and c.state.oom_killed
    assert c.state.finished_at == FINISHED
    assert c.state.health.status == "unhealthy"
