"""The stats ``networks`` block from /proc/<pid>/net/dev."""
# ruff: noqa: E501  (the kernel's own column layout, kept as it prints it)

from __future__ import annotations

from whaled.network.netstats import parse_net_dev

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  eth0:    5402      41    1    2    0     0          0         0     1730      19    3    4    0     0       0          0
  eth1: 9 8 7 6 0 0 0 0 5 4 3 2 0 0 0 0
 broken: x y
"""


def test_counters_per_interface_without_loopback() -> None:
    assert parse_net_dev(NET_DEV) == {
        "eth0": {"rx_bytes": 5402, "rx_packets": 41, "rx_errors": 1, "rx_dropped": 2,
                 "tx_bytes": 1730, "tx_packets": 19, "tx_errors": 3, "tx_dropped": 4},
        "eth1": {"rx_bytes": 9, "rx_packets": 8, "rx_errors": 7, "rx_dropped": 6,
                 "tx_bytes": 5, "tx_packets": 4, "tx_errors": 3, "tx_dropped": 2},
    }  # fmt: skip
    assert parse_net_dev("") == {}
