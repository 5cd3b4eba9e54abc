"""Per-interface counters of a container's namespace (``/proc/<pid>/net/dev``) as the
``networks`` block of ``GET /containers/{id}/stats`` (pure parsing)."""

from __future__ import annotations

RX_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped")
TX_FIELDS = ("tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """Interface → dockerd's eight counters; loopback is left out, as dockerd does."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or not name or name == "lo":
            continue
        values = rest.split()
        if len(values) < 12:
            continue
        try:
            rx = [int(v) for v in values[0:4]]
            tx = [int(v) for v in values[8:12]]
        except ValueError:
            continue
        out[name] = {
            **dict(zip(RX_FIELDS, rx, strict=True)),
            **dict(zip(TX_FIELDS, tx, strict=True)),
        }
    return out
