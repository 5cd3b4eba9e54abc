"""The ratios chart (PNG, matplotlib), written next to the JSON results."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.stats import RATIOS, FigureRow, format_number


def chart_data(rows: Sequence[FigureRow]) -> list[tuple[str, dict[str, float]]]:
    """(label, {ratio name: value}) for every figure with at least one ratio; for 'higher is
    better' figures the ratio is inverted so that on the chart < 1 always means whaled is
    faster / smaller."""
    out: list[tuple[str, dict[str, float]]] = []
    for row in rows:
        values: dict[str, float] = {}
        for name, r in row.ratios().items():
            if r is None or r <= 0:
                continue
            values[name] = 1.0 / r if row.better == "higher" else r
        if values:
            out.append((row.name, values))
    return out


def write_chart(rows: Sequence[FigureRow], path: str, title: str) -> str | None:
    """Write the chart; return None on success, else why it was skipped."""
    data = chart_data(rows)
    if not data:
        return "no ratios to chart (no figure has both whaled and a reference or floor)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as e:
        return f"matplotlib not available ({e})"

    names = [f"{a}/{b}" for a, b in RATIOS]
    colors = {"whaled/dockerd": "#1f77b4", "whaled/floor": "#ff7f0e"}
    height = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(data) + 1.6))
    ys = list(range(len(data)))
    every: list[float] = []
    for k, name in enumerate(names):
        xs = [vals.get(name, math.nan) for _, vals in data]
        pos = [y + (k - (len(names) - 1) / 2) * height for y in ys]
        # Bars grow from 1 (parity) towards the ratio, left = whaled cheaper.
        ax.barh(pos, [x - 1.0 for x in xs], left=1.0, height=height, label=name,
                color=colors.get(name))  # fmt: skip
        for x, y in zip(xs, pos, strict=True):
            if not math.isnan(x):
                every.append(x)
                right = x >= 1
                ax.annotate(
                    format_number(x), (x, y), fontsize=7, va="center",
                    ha="left" if right else "right", xytext=(3 if right else -3, 0),
                    textcoords="offset points",
                )  # fmt: skip
    lo, hi = min([*every, 1.0]), max([*every, 1.0])
    ax.set_xlim(lo / 2.0, hi * 2.0)
    ax.set_yticks(ys)
    ax.set_yticklabels([label for label, _ in data], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("cost ratio (log scale; < 1: whaled cheaper/faster; throughputs inverted)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09 - 0.9 / (len(data) + 4)), ncol=2,
              fontsize=8, frameon=False)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
