"""Daemon logging: repeated warnings and errors are rate-limited."""

from __future__ import annotations

import logging

import pytest

from whaled.logsetup import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(
    msg: str, *args: object, level: int = logging.ERROR, name: str = "whaled"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_burst_passes_then_repeats_are_dropped_until_the_window_ends() -> None:
    clock = Clock()
    f = RepeatFilter(window=60, burst=3, clock=clock)
    passed = [f.filter(record("accept failed: %s", i)) for i in range(1000)]
    assert passed.count(True) == 3 and passed[:3] == [True] * 3
    clock.now += 61
    later = record("accept failed: %s", "x")
    assert f.filter(later)
    assert later.getMessage() == "accept failed: x (the same message was suppressed 997 times)"


def test_different_messages_levels_and_loggers_are_counted_apart() -> None:
    f = RepeatFilter(window=60, burst=1, clock=Clock())
    assert f.filter(record("a"))
    assert f.filter(record("b"))
    assert f.filter(record("a", level=logging.WARNING))
    assert f.filter(record("a", name="whaled.api"))
    assert not f.filter(record("a"))


def test_debug_and_info_are_never_dropped() -> None:
    f = RepeatFilter(window=60, burst=1, clock=Clock())
    assert all(f.filter(record("x", level=logging.INFO)) for _ in range(50))
    assert all(f.filter(record("x", level=logging.DEBUG)) for _ in range(50))


def test_tracked_keys_are_bounded() -> None:
    clock = Clock()
    f = RepeatFilter(window=60, burst=1, max_keys=10, clock=clock)
    for i in range(100):
        assert f.filter(record(f"unique {i}"))
    assert len(f._windows) == 10
    # The oldest were forgotten: the first message passes again as new.
    assert f.filter(record("unique 0"))
    assert not f.filter(record("unique 99"))


def test_debug_is_whaleds_own_not_the_netlink_librarys(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: with ``debug`` on, pyroute2 logged every netlink message (hundreds of
    lines per container start), also when it sets its own logger's level on import, after
    the daemon's logging was set up."""
    from whaled.config.model import Config
    from whaled.logsetup import setup_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    chatty = logging.getLogger("pyroute2.netlink.core")
    try:
        setup_logging(Config(debug=True))
        logging.getLogger("pyroute2").setLevel(logging.DEBUG)  # what an import may do
        chatty.debug("netlink chatter")
        chatty.info("netlink news")
        logging.getLogger("pyroute2x").debug("another library")
        logging.getLogger("whaled.api").debug("whaled detail")
        err = capsys.readouterr().err
        assert "netlink chatter" not in err
        assert "netlink news" in err
        assert "another library" in err
        assert "whaled detail" in err
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("pyroute2").setLevel(logging.NOTSET)
        logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
