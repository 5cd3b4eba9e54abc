"""``bench/run``: measure whaled (and, with ``--reference``, dockerd) and the floors in one run.

See bench/README.md. Exit code 0 when the run completed (figures that are n/a or failed are
reported, not fatal), 2 on bad arguments, 1 when the run could not be made or cleaned up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any

from bench import machine, prereqs
from bench.chart import write_chart
from bench.client import Client
from bench.engines import (
    DockerdEngine,
    Engine,
    EngineError,
    HostDirs,
    WhaledEngine,
    leftovers,
)
from bench.figures import ALL, FLOOR, Ctx, Group, Params, error_text, group_names, select
from bench.stats import FigureRow, Outcome, format_table, rows_from_json, rows_to_json

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")


def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmark whaled against dockerd (--reference) and the physical floor.",
    )
    ap.add_argument("--quick", action="store_true", help="fewer samples/containers (< 3 min)")
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also start Debian's dockerd (installs docker.io if /usr/sbin/dockerd is missing)",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=group_names(),
        help=f"run only these figure groups: {', '.join(group_names())}",
    )
    ap.add_argument("--json", metavar="PATH", help="results file (default bench/results/DATE.json)")
    ap.add_argument("--no-chart", action="store_true", help="do not write the PNG chart")
    ap.add_argument("--no-floor", action="store_true", help="skip the floor measurements")
    ap.add_argument(
        "--replot", metavar="JSON", help="only redraw the chart of an existing results file"
    )
    return ap.parse_args(list(argv))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_group(
    ctx: Ctx, group: Group, targets: Sequence[str], reasons: dict[str, str]
) -> list[FigureRow]:
    """Measure one group on every target that can take it; one row per figure."""
    specs = group.figures(ctx.params)
    rows = {s.key: FigureRow(name=s.name, unit=s.unit, better=s.better, group=group.name)
            for s in specs}  # fmt: skip
    if group.has_floor and group.floor_note:
        for r in rows.values():
            r.note = group.floor_note
    log(f"[{group.name}] {group.help}")
    runnable: list[str] = []
    for t in targets:
        if t == FLOOR:
            if group.has_floor:
                runnable.append(t)
        elif t in reasons:
            for r in rows.values():
                r.outcomes[t] = Outcome.skipped(reasons[t])
        elif group.needs_running_engine and not (t in ctx.engines and ctx.engines[t].alive()):
            for r in rows.values():
                r.outcomes[t] = Outcome.error(f"{t} is not running (it died earlier)")
        else:
            runnable.append(t)
    t0 = time.monotonic()
    try:
        results = group.measure_all(ctx, runnable)
    except Exception as e:  # a bug in the group itself: report it, go on with the next one
        log(f"  error: {error_text(e)}")
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()
        results = {t: {ALL: Outcome.error(error_text(e))} for t in runnable}
    for t, result in results.items():
        for s in specs:
            v = result.get(s.key, result.get(ALL))
            if v is not None:
                rows[s.key].outcomes[t] = v if isinstance(v, Outcome) else Outcome.of(v)
        states = sorted({o.status for r in rows.values() if (o := r.outcomes.get(t)) is not None})
        log(f"  {t}: {'/'.join(states) or 'nothing'}")
    log(f"  ({time.monotonic() - t0:.1f} s)")
    return [rows[s.key] for s in specs]


def _title(date: str, mode: str, facts: dict[str, Any]) -> str:
    return (
        f"whaled bench {date} ({mode}) — "
        f"{facts.get('cpu_model')}, {facts.get('nproc')} cpus, kernel {facts.get('kernel')}"
    )


def replot(json_path: str) -> int:
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    why = prereqs.ensure_matplotlib(log)
    if why is None:
        png = os.path.splitext(json_path)[0] + ".png"
        title = _title(data.get("date", "?"), data.get("mode", "?"), data.get("machine", {}))
        why = write_chart(rows_from_json(data["figures"]), png, title)
        if why is None:
            print(f"chart: {_show(png)}")
            return 0
    print(f"chart skipped: {why}")
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.replot:
        return replot(args.replot)
    if os.geteuid() != 0:
        log("bench/run needs root (it starts daemons that mount and run containers)")
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    started = time.monotonic()
    params = Params.for_mode(args.quick)
    groups = select(args.only)
    today = dt.date.today().isoformat()
    json_path = args.json or os.path.join(RESULTS_DIR, f"{today}.json")
    png_path = os.path.splitext(json_path)[0] + ".png"

    # -- set-up (not timed against the 3-minute budget of --quick) --
    reasons: dict[str, str] = {}
    targets = ["whaled"]
    if args.reference:
        targets.append("dockerd")
        why = prereqs.ensure_dockerd(log)
        if why is not None:
            reasons["dockerd"] = why
            log(f"dockerd: not available: {why} — continuing with whaled only")
    if not args.no_floor:
        targets.append("floor")
    chart_reason = None if not args.no_chart else "--no-chart"
    if chart_reason is None:
        chart_reason = prereqs.ensure_matplotlib(log)
        if chart_reason is not None:
            log(f"chart: {chart_reason} — the PNG will be skipped")
    setup_s = time.monotonic() - started

    facts = machine.facts()
    log(f"machine: {facts['cpu_model']}, {facts['nproc']} cpus, kernel {facts['kernel']}, "
        f"cgroups {facts['cgroups']}, Python {facts['python']}")  # fmt: skip

    host_dirs = HostDirs()
    workdir = tempfile.mkdtemp(prefix="wb-work-", dir="/tmp")
    engines: dict[str, Engine] = {}
    clients: dict[str, Client] = {}
    roots: list[str] = [workdir]
    engine_info: dict[str, Any] = {}
    rows: list[FigureRow] = []

    def whaled_factory(*, default_bridge: bool = True) -> Engine:
        e = WhaledEngine(default_bridge=default_bridge)
        roots.append(e.root)
        return e

    def dockerd_factory(*, default_bridge: bool = True) -> Engine:
        e = DockerdEngine()  # always --bridge=none: the host's iptables are not touched
        roots.append(e.root)
        return e

    ctx = Ctx(
        params=params, workdir=workdir, engines=engines, clients=clients,
        factories={"whaled": whaled_factory, "dockerd": dockerd_factory}, log=log,
    )  # fmt: skip
    bench_started = time.monotonic()
    failed_cleanup: list[str] = []
    try:
        for name in [t for t in targets if t != "floor" and t not in reasons]:
            eng = ctx.factories[name]()
            engines[name] = eng
            try:
                took = eng.timed_start()
            except (EngineError, OSError) as e:
                reasons[name] = f"{name} cannot run on this host: {error_text(e)}"
                log(f"{name}: CANNOT RUN on this host: {e}\n{eng.log_tail()}")
                if name == "whaled":
                    raise
                continue
            clients[name] = Client(eng.sock)
            info: dict[str, Any] = {"socket": eng.sock, "root": eng.root, "first_start_s": took}
            try:
                v = eng.version()
                info.update(version=v.get("Version"), api_version=v.get("ApiVersion"),
                            components=[{"Name": c.get("Name"), "Version": c.get("Version")}
                                        for c in v.get("Components") or []])  # fmt: skip
            except Exception as e:
                info["version_error"] = error_text(e)
            if isinstance(eng, DockerdEngine):
                info["containerd_argv"] = eng.containerd_argv()
            engine_info[name] = info
            log(f"{name}: ready in {took:.2f} s (pid {eng.pid}, root {eng.root})")
        for name in reasons:
            engine_info.setdefault(name, {})["unavailable"] = reasons[name]

        for group in groups:
            rows.extend(run_group(ctx, group, targets, reasons))
    finally:
        log("cleaning up ...")
        for c in clients.values():
            c.close()
        try:
            ctx.cleanup()
        except Exception as e:
            failed_cleanup.append(f"runc bundle: {e}")
        for name, eng in engines.items():
            try:
                eng.cleanup()
            except Exception as e:
                failed_cleanup.append(f"{name}: {e}")
        shutil.rmtree(workdir, ignore_errors=True)
        left = leftovers(roots)
        if "dockerd" in engines:
            left.extend(f"host dir {d} (not empty)" for d in host_dirs.restore())
        if left:
            failed_cleanup.extend(left)
        for item in failed_cleanup:
            log(f"LEFTOVER: {item}")

    bench_s = time.monotonic() - bench_started
    shown = [t for t in targets if t not in reasons or t == "dockerd"]
    table = format_table(rows, shown)
    header = _title(today, "quick" if args.quick else "full", facts)
    print(header)
    print(table)
    print(f"\nmeasured in {bench_s:.0f} s (+ {setup_s:.0f} s set-up)")

    result = {
        "date": today,
        "mode": "quick" if args.quick else "full",
        "argv": list(sys.argv[1:] if argv is None else argv),
        "duration_s": round(bench_s, 1),
        "setup_s": round(setup_s, 1),
        "machine": facts,
        "engines": engine_info,
        "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
        "figures": rows_to_json(rows),
        "leftovers": failed_cleanup,
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"results: {_show(json_path)}")
    if chart_reason is None:
        why = write_chart(rows, png_path, header)
        print(f"chart: {_show(png_path)}" if why is None else f"chart skipped: {why}")
    else:
        print(f"chart skipped: {chart_reason}")
    return 1 if failed_cleanup else 0
