from __future__ import annotations

import pytest

from whaled.container.restart import Backoff, RestartPolicy, should_restart
from whaled.errors import InvalidParameter


def decide(
    name: str,
    max_retry: int = 0,
    *,
    exit_code: int = 1,
    manually_stopped: bool = False,
    restart_count: int = 0,
    shutting_down: bool = False,
    at_daemon_start: bool = False,
) -> bool:
    return should_restart(
        RestartPolicy(name=name, maximum_retry_count=max_retry),
        exit_code=exit_code,
        manually_stopped=manually_stopped,
        restart_count=restart_count,
        daemon_shutting_down=shutting_down,
        at_daemon_start=at_daemon_start,
    )


@pytest.mark.parametrize("name", ["no", ""])
def test_no_never_restarts(name: str) -> None:
    assert not decide(name, exit_code=1)
    assert not decide(name, exit_code=0)


@pytest.mark.parametrize("name", ["always", "unless-stopped"])
def test_always_and_unless_stopped(name: str) -> None:
    assert decide(name, exit_code=0)
    assert decide(name, exit_code=137, restart_count=1000)
    assert not decide(name, manually_stopped=True)
    assert not decide(name, shutting_down=True)


def test_on_failure() -> None:
    assert decide("on-failure", exit_code=1)
    assert not decide("on-failure", exit_code=0)
    assert decide("on-failure", exit_code=-1)
    assert decide("on-failure", 0, exit_code=2, restart_count=10_000)  # 0: no limit
    assert decide("on-failure", 3, exit_code=1, restart_count=2)
    assert not decide("on-failure", 3, exit_code=1, restart_count=3)
    assert not decide("on-failure", exit_code=1, manually_stopped=True)
    assert not decide("on-failure", exit_code=1, shutting_down=True)


def test_at_daemon_start_only_unless_stopped_honours_manual_stop() -> None:
    assert decide("always", manually_stopped=True, at_daemon_start=True)
    assert not decide("unless-stopped", manually_stopped=True, at_daemon_start=True)
    assert decide("unless-stopped", manually_stopped=False, at_daemon_start=True)
    assert decide("on-failure", exit_code=137, manually_stopped=True, at_daemon_start=True)
    assert not decide("on-failure", exit_code=0, at_daemon_start=True)
    assert not decide("no", at_daemon_start=True)


def test_from_api() -> None:
    assert RestartPolicy.from_api(None) == RestartPolicy(name="", maximum_retry_count=0)
    p = RestartPolicy.from_api({"Name": "on-failure", "MaximumRetryCount": 5})
    assert p == RestartPolicy(name="on-failure", maximum_retry_count=5)
    assert p.to_api() == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert RestartPolicy.from_api({"Name": None, "MaximumRetryCount": None}).is_none
    with pytest.raises(InvalidParameter):
        RestartPolicy.from_api({"Name": 1})
    with pytest.raises(InvalidParameter):
        RestartPolicy.from_api({"Name": "on-failure", "MaximumRetryCount": "3"})
    with pytest.raises(InvalidParameter):
        RestartPolicy.from_api({"Name": "on-failure", "MaximumRetryCount": True})


@pytest.mark.parametrize(
    ("name", "count", "error"),
    [
        ("", 0, None),
        ("", 123, None),
        ("", -123, None),
        ("no", 0, None),
        ("always", 0, None),
        ("unless-stopped", 0, None),
        ("on-failure", 0, None),
        ("on-failure", 5, None),
        (
            "always",
            1,
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        (
            "unless-stopped",
            -1,
            "invalid restart policy: maximum retry count can only be used with 'on-failure' "
            "and cannot be negative",
        ),
        (
            "no",
            2,
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        ("on-failure", -2, "invalid restart policy: maximum retry count cannot be negative"),
        (
            "sometimes",
            0,
            "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'",
        ),
    ],
)
def test_validate(name: str, count: int, error: str | None) -> None:
    policy = RestartPolicy(name=name, maximum_retry_count=count)
    if error is None:
        policy.validate()
    else:
        with pytest.raises(InvalidParameter) as err:
            policy.validate()
        assert err.value.message == error


def test_backoff_doubles_to_one_minute() -> None:
    b = Backoff()
    delays = [b.next_delay(0.5) for _ in range(13)]
    assert delays == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
        6.4,
        12.8,
        25.6,
        51.2,
        60.0,
        60.0,
        60.0,
    ]


def test_backoff_resets_after_ten_seconds_of_running() -> None:
    b = Backoff()
    for _ in range(5):
        b.next_delay(1.0)
    assert b.next_delay(9.999) == 3.2
    assert b.next_delay(10.0) == 0.1
    assert b.next_delay(0.0) == 0.2
    assert b.next_delay(3600.0) == 0.1


def test_backoff_reset() -> None:
    b = Backoff()
    for _ in range(20):
        b.next_delay(0.0)
    b.reset()
    assert b.next_delay(0.0) == 0.1
