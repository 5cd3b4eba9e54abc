"""Pure helpers for the benchmark suite: summaries, ratios, value formatting and the table.

Nothing here touches a file, a process or the clock, so every function is unit-tested
(``tests/unit/test_bench_stats.py``).

Vocabulary:

- a *figure* is one measured quantity (``docker run --rm ... true``, ``/_ping c=8``, ...) with a
  unit and a direction (``lower`` or ``higher`` is better);
- a *target* is what a figure is measured on: an engine (``whaled``, ``dockerd``) or the
  ``floor`` (the bare runtime, plain tar, raw HTTP: what no engine can beat);
- an ``Outcome`` is either samples (status ``ok``) or a reason why there are none (``n/a`` when
  the engine does not implement the endpoint yet, ``error`` when it failed, ``skipped``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Better = Literal["lower", "higher"]
Status = Literal["ok", "n/a", "error", "skipped"]

TARGETS: tuple[str, ...] = ("whaled", "dockerd", "floor")
RATIOS: tuple[tuple[str, str], ...] = (("whaled", "dockerd"), ("whaled", "floor"))
NA_NOT_IMPLEMENTED = "n/a (not implemented by this engine yet)"


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    min: float
    median: float
    p95: float
    max: float
    mean: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default method). Raises ``ValueError`` on no values or ``q`` out of range."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile out of range: {q}")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(s[lo])
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def summarize(samples: Sequence[float]) -> Summary:
    """min / median / p95 / max / mean of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("no samples to summarize")
    return Summary(
        n=len(samples),
        min=float(min(samples)),
        median=median(samples),
        p95=percentile(samples, 95.0),
        max=float(max(samples)),
        mean=float(sum(samples) / len(samples)),
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def rate(amount: float, seconds: float) -> float:
    """Amount per second (requests/s, MB/s); raises ``ValueError`` on a non-positive time."""
    if seconds <= 0:
        raise ValueError(f"non-positive duration: {seconds}")
    return amount / seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one target gave for one figure."""

    status: Status = "ok"
    samples: tuple[float, ...] = ()
    reason: str = ""

    @staticmethod
    def of(samples: Sequence[float]) -> Outcome:
        if not samples:
            return Outcome(status="error", reason="no samples")
        return Outcome(status="ok", samples=tuple(float(s) for s in samples))

    @staticmethod
    def na(reason: str = NA_NOT_IMPLEMENTED) -> Outcome:
        return Outcome(status="n/a", reason=reason)

    @staticmethod
    def error(reason: str) -> Outcome:
        return Outcome(status="error", reason=reason)

    @staticmethod
    def skipped(reason: str) -> Outcome:
        return Outcome(status="skipped", reason=reason)

    @property
    def summary(self) -> Summary | None:
        return summarize(self.samples) if self.status == "ok" and self.samples else None

    @property
    def median(self) -> float | None:
        s = self.summary
        return s.median if s is not None else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        s = self.summary
        if s is not None:
            out.update(
                n=s.n, min=s.min, median=s.median, p95=s.p95, max=s.max, mean=s.mean,
                samples=list(self.samples),
            )  # fmt: skip
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(slots=True)
class FigureRow:
    """One figure with the outcome of each target that was asked for it."""

    name: str
    unit: str
    better: Better
    group: str = ""
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    note: str = ""

    def ratios(self) -> dict[str, float | None]:
        """Ratios of medians, e.g. ``{"whaled/dockerd": 0.8, "whaled/floor": 3.1}``."""
        out: dict[str, float | None] = {}
        for num, den in RATIOS:
            a = self.outcomes.get(num)
            b = self.outcomes.get(den)
            out[f"{num}/{den}"] = ratio(
                a.median if a is not None else None, b.median if b is not None else None
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "unit": self.unit,
            "better": self.better,
            "results": {t: o.to_json() for t, o in self.outcomes.items()},
            "ratios": self.ratios(),
            **({"note": self.note} if self.note else {}),
        }


# --- formatting -------------------------------------------------------------------------------


def format_number(v: float) -> str:
    """Three significant digits, thousands separated, no exponent: 0.0123, 1.23, 123, 12,300."""
    if math.isnan(v) or math.isinf(v):
        return str(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{round(v, 2 - math.floor(math.log10(a))):,.0f}"
    digits = 2 - math.floor(math.log10(a))
    text = f"{v:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{format_number(r)}x"


def format_cell(outcome: Outcome | None) -> str:
    """``median [min-p95]`` for samples; the status word otherwise; ``-`` if not asked."""
    if outcome is None:
        return "-"
    s = outcome.summary
    if s is None:
        return outcome.status
    if s.n == 1:
        return format_number(s.median)
    return f"{format_number(s.median)} [{format_number(s.min)}-{format_number(s.p95)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return out


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} more)"


def format_table(rows: Sequence[FigureRow], targets: Sequence[str] = TARGETS) -> str:
    """The results table: one line per figure, ``median [min-p95]`` per target, the ratios of
    medians; then the notes, each once: why a target has no numbers, what a floor is."""
    pairs = [(a, b) for a, b in RATIOS if a in targets and b in targets]
    header = ["figure", "unit", "better", *targets, *(f"{a}/{b}" for a, b in pairs)]
    body: list[list[str]] = []
    reasons: dict[tuple[str, str, str], list[str]] = {}
    notes: dict[str, list[str]] = {}
    for row in rows:
        cells = [row.name, row.unit, row.better]
        for t in targets:
            o = row.outcomes.get(t)
            cells.append(format_cell(o))
            if o is not None and o.status != "ok" and o.reason:
                reasons.setdefault((t, o.status, o.reason), []).append(row.name)
        rs = row.ratios()
        cells.extend(format_ratio(rs[f"{a}/{b}"]) for a, b in pairs)
        body.append(cells)
        if row.note:
            notes.setdefault(row.note, []).append(row.name)
    right = set(range(3, len(header)))
    lines = _table(header, body, right)
    lines.append(
        "cells: median [min-p95] of the samples; ratios: medians divided "
        "(lower-better: < 1 = whaled faster; higher-better: > 1 = whaled faster)"
    )
    if reasons or notes:
        lines.append("notes:")
        for (t, status, reason), names in reasons.items():
            text = reason if reason.startswith(status) else f"{status}: {reason}"
            lines.append(f"  {t}: {text} [{_names(names)}]")
        for note, names in notes.items():
            lines.append(f"  {_names(names)}: {note}")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[FigureRow]) -> list[dict[str, Any]]:
    return [r.to_json() for r in rows]


def rows_from_json(figures: Sequence[Mapping[str, Any]]) -> list[FigureRow]:
    """The inverse of ``rows_to_json`` (samples, statuses and reasons; summaries recomputed)."""
    rows: list[FigureRow] = []
    for f in figures:
        row = FigureRow(
            name=str(f["name"]), unit=str(f["unit"]), better=f["better"],
            group=str(f.get("group", "")), note=str(f.get("note", "")),
        )  # fmt: skip
        for target, o in f.get("results", {}).items():
            if o.get("status") == "ok":
                row.outcomes[target] = Outcome.of(o.get("samples", []))
            else:
                row.outcomes[target] = Outcome(status=o["status"], reason=o.get("reason", ""))
        rows.append(row)
    return rows


def merge_outcomes(row: FigureRow, outcomes: Mapping[str, Outcome]) -> FigureRow:
    """Return ``row`` with ``outcomes`` added (later ones replace earlier ones per target)."""
    row.outcomes.update(outcomes)
    return row
