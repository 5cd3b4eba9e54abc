"""Pure helpers of the benchmark suite: summaries, ratios, formatting, the table, chart data,
the small parsers the bench relies on (HTTP heads, floor-server routing, route-missing), the
round-robin sampler (with a fake group) and the load generator against the floor server on
unix sockets in tmp_path (no daemon, no root)."""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path
from typing import Any

import pytest

from bench.chart import chart_data
from bench.client import NotImplementedByEngine, route_missing
from bench.figures import ALL, Ctx, FigureSpec, Interleaved, Params
from bench.floorserver import route_key, serve
from bench.httpclient import Response, _load, build_request, fetch, parse_head
from bench.stats import (
    NA_NOT_IMPLEMENTED,
    FigureRow,
    Outcome,
    format_cell,
    format_number,
    format_ratio,
    format_table,
    median,
    percentile,
    rate,
    ratio,
    rows_from_json,
    rows_to_json,
    summarize,
)

# --- percentile / summary ---------------------------------------------------------------------


def test_percentile_interpolates_like_numpy_linear() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    # (n-1)*q = 3*0.95 = 2.85 -> 3 + 0.85*(4-3)
    assert percentile(values, 95) == pytest.approx(3.85)


def test_percentile_ignores_input_order_and_does_not_mutate() -> None:
    values = [5.0, 1.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert values == [5.0, 1.0, 3.0]


def test_percentile_single_value() -> None:
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("q", [-1.0, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


def test_percentile_rejects_empty() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_median_odd_and_even() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_summarize() -> None:
    s = summarize([float(i) for i in range(1, 21)])  # 1..20
    assert s.n == 20
    assert s.min == 1.0
    assert s.max == 20.0
    assert s.median == 10.5
    assert s.p95 == pytest.approx(19.05)
    assert s.mean == 10.5


def test_summarize_empty_raises() -> None:
    with pytest.raises(ValueError):
        summarize([])


# --- ratios and rates -------------------------------------------------------------------------


def test_ratio() -> None:
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(None, 4.0) is None
    assert ratio(2.0, None) is None
    assert ratio(2.0, 0.0) is None


def test_rate() -> None:
    assert rate(200.0, 2.0) == 100.0
    with pytest.raises(ValueError):
        rate(1.0, 0.0)


def test_row_ratios_use_medians() -> None:
    row = FigureRow(name="run", unit="ms", better="lower")
    row.outcomes["whaled"] = Outcome.of([100.0, 110.0, 400.0])  # median 110
    row.outcomes["dockerd"] = Outcome.of([200.0, 220.0, 240.0])  # median 220
    row.outcomes["floor"] = Outcome.of([55.0])
    r = row.ratios()
    assert r["whaled/dockerd"] == pytest.approx(0.5)
    assert r["whaled/floor"] == pytest.approx(2.0)


def test_row_ratios_missing_when_a_side_has_no_numbers() -> None:
    row = FigureRow(name="run", unit="ms", better="lower")
    row.outcomes["whaled"] = Outcome.na()
    row.outcomes["dockerd"] = Outcome.of([200.0])
    assert row.ratios() == {"whaled/dockerd": None, "whaled/floor": None}


# --- outcomes ---------------------------------------------------------------------------------


def test_outcome_of_no_samples_is_an_error() -> None:
    o = Outcome.of([])
    assert o.status == "error"
    assert o.summary is None


def test_outcome_na_default_reason() -> None:
    o = Outcome.na()
    assert o.status == "n/a"
    assert o.reason == NA_NOT_IMPLEMENTED
    assert o.median is None


def test_outcome_json() -> None:
    ok = Outcome.of([1, 2, 3]).to_json()
    assert ok["status"] == "ok"
    assert ok["n"] == 3
    assert ok["median"] == 2.0
    assert ok["samples"] == [1.0, 2.0, 3.0]
    na = Outcome.na("no endpoint").to_json()
    assert na == {"status": "n/a", "reason": "no endpoint"}


def test_rows_to_json() -> None:
    row = FigureRow(name="f", unit="ms", better="lower", group="g", note="floor: x")
    row.outcomes["whaled"] = Outcome.of([1.0, 3.0])
    row.outcomes["floor"] = Outcome.of([1.0])
    (j,) = rows_to_json([row])
    assert j["name"] == "f"
    assert j["group"] == "g"
    assert j["unit"] == "ms"
    assert j["better"] == "lower"
    assert j["results"]["whaled"]["median"] == 2.0
    assert j["ratios"] == {"whaled/dockerd": None, "whaled/floor": 2.0}
    assert j["note"] == "floor: x"


def test_rows_json_round_trip() -> None:
    rows = _rows()
    back = rows_from_json(rows_to_json(rows))
    assert [r.to_json() for r in back] == rows_to_json(rows)
    assert format_table(back) == format_table(rows)


# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (0.01234, "0.0123"),
        (0.2, "0.2"),
        (1.0, "1"),
        (1.234, "1.23"),
        (12.34, "12.3"),
        (99.96, "100"),
        (123.4, "123"),
        (1234.0, "1,230"),
        (12345.0, "12,300"),
        (-5.5, "-5.5"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_number_nan() -> None:
    assert format_number(math.nan) == "nan"


def test_format_ratio() -> None:
    assert format_ratio(None) == "-"
    assert format_ratio(0.5) == "0.5x"
    assert format_ratio(2.345) == "2.35x" or format_ratio(2.345) == "2.34x"


def test_format_cell() -> None:
    assert format_cell(None) == "-"
    assert format_cell(Outcome.na()) == "n/a"
    assert format_cell(Outcome.error("boom")) == "error"
    assert format_cell(Outcome.of([5.0])) == "5"
    assert format_cell(Outcome.of([1.0, 2.0, 3.0])) == "2 [1-2.9]"


def _rows() -> list[FigureRow]:
    a = FigureRow(name="docker run", unit="ms", better="lower", note="floor: runc run")
    a.outcomes = {
        "whaled": Outcome.of([100.0, 120.0, 110.0]),
        "dockerd": Outcome.of([220.0]),
        "floor": Outcome.of([55.0]),
    }
    b = FigureRow(name="GET /_ping c=1", unit="req/s", better="higher")
    b.outcomes = {"whaled": Outcome.na(), "dockerd": Outcome.of([10000.0]), "floor": Outcome.of([])}
    c = FigureRow(name="GET /_ping c=8", unit="req/s", better="higher")
    c.outcomes = {"whaled": Outcome.na(), "dockerd": Outcome.of([20000.0])}
    return [a, b, c]


def test_format_table_layout() -> None:
    text = format_table(_rows())
    lines = text.splitlines()
    assert lines[0].split() == [
        "figure", "unit", "better", "whaled", "dockerd", "floor", "whaled/dockerd", "whaled/floor",
    ]  # fmt: skip
    assert set(lines[1].replace(" ", "")) == {"-"}
    run = next(line for line in lines if line.startswith("docker run"))
    assert "110 [100-119]" in run
    assert "220" in run
    assert run.split()[-2:] == ["0.5x", "2x"]
    ping1 = next(line for line in lines if line.startswith("GET /_ping c=1"))
    assert "n/a" in ping1 and "10,000" in ping1 and "error" in ping1
    ping8 = next(line for line in lines if line.startswith("GET /_ping c=8"))
    assert ping8.split()[-3:] == ["-", "-", "-"]  # floor not asked; no ratios
    # all table lines are aligned: the ratio columns end at the same place
    assert len(lines[0]) == len(run)


def test_format_table_notes_once_each() -> None:
    text = format_table(_rows())
    notes = text.split("notes:", 1)[1].splitlines()
    na = [n for n in notes if n.strip().startswith("whaled:")]
    assert len(na) == 1  # the same reason for two figures is printed once
    assert NA_NOT_IMPLEMENTED in na[0]
    assert "GET /_ping c=1 (+1 more)" in na[0]
    assert any("floor: error: no samples" in n for n in notes)
    assert any(n.strip() == "docker run: floor: runc run" for n in notes)


def test_format_table_selected_targets() -> None:
    text = format_table(_rows(), targets=("whaled", "floor"))
    # no dockerd column and no whaled/dockerd ratio column
    assert text.splitlines()[0].split()[3:] == ["whaled", "floor", "whaled/floor"]


# --- chart data -------------------------------------------------------------------------------


def test_chart_data_inverts_throughputs() -> None:
    a = FigureRow(name="run", unit="ms", better="lower")
    a.outcomes = {"whaled": Outcome.of([50.0]), "dockerd": Outcome.of([100.0])}
    b = FigureRow(name="load", unit="MB/s", better="higher")
    b.outcomes = {"whaled": Outcome.of([200.0]), "floor": Outcome.of([400.0])}
    c = FigureRow(name="none", unit="ms", better="lower")
    c.outcomes = {"whaled": Outcome.na()}
    data = chart_data([a, b, c])
    assert data == [("run", {"whaled/dockerd": 0.5}), ("load", {"whaled/floor": 2.0})]


# --- parsers the bench relies on ----------------------------------------------------------------


def test_build_request() -> None:
    assert build_request("GET", "/_ping") == (
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: whaled-bench\r\n\r\n"
    )
    post = build_request("POST", "/x", b"{}", "application/json")
    assert b"Content-Length: 2\r\n" in post
    assert b"Content-Type: application/json\r\n" in post
    assert post.endswith(b"\r\n\r\n{}")


def test_parse_head() -> None:
    status, headers = parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.45\r\n\r\n"
    )
    assert status == 200
    assert headers == {"content-length": "2", "api-version": "1.45"}


def test_parse_head_rejects_garbage() -> None:
    with pytest.raises(RuntimeError):
        parse_head(b"garbage\r\n\r\n")


@pytest.mark.parametrize(
    ("target", "key"),
    [
        (b"/_ping", b"/_ping"),
        (b"/v1.45/_ping", b"/_ping"),
        (b"/v1.41/containers/json?all=1", b"/containers/json"),
        (b"/version", b"/version"),
        (b"/v1/x", b"/v1/x"),
    ],
)
def test_floor_route_key(target: bytes, key: bytes) -> None:
    assert route_key(target) == key


@pytest.mark.parametrize(
    ("status", "body", "missing"),
    [
        (404, b'{"message":"page not found"}\n', True),
        (404, b"404: Not Found", True),
        (404, b"", True),
        (405, b'{"message":"method not allowed"}', True),
        (501, b'{"message":"not implemented"}', True),
        (404, b'{"message":"No such container: abc"}', False),
        (404, b'{"message":"No such image: busybox:latest"}', False),
        (400, b'{"message":"Config cannot be empty"}', False),
        (200, b"OK", False),
        (500, b'{"message":"page not found"}', False),
    ],
)
def test_route_missing(status: int, body: bytes, missing: bool) -> None:
    assert route_missing(status, body) is missing


# --- round-robin sampling and the load generator ----------------------------------------------


class _FakeGroup(Interleaved):
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.torn: list[str] = []

    def figures(self, p: Params) -> list[FigureSpec]:
        return [FigureSpec("a", "a", "ms", "lower"), FigureSpec("b", "b", "ms", "lower")]

    def rounds(self, p: Params) -> int:
        return 3

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        if target == "missing":
            raise NotImplementedByEngine("POST", "/containers/create", 404)
        if target == "broken":
            raise RuntimeError("boom")
        na = {"b": Outcome.na("no b here")} if target == "floor" else {}
        return {"n": 0, "na": na}

    def sample(
        self, ctx: Ctx, target: str, state: dict[str, Any]
    ) -> dict[str, float | list[float]]:
        self.calls.append(target)
        state["n"] += 1
        if target == "flaky" and state["n"] == 3:
            raise RuntimeError("died in round 2")
        out: dict[str, float | list[float]] = {"a": float(state["n"])}
        if "b" not in state["na"]:
            out["b"] = [10.0 * state["n"], 10.0 * state["n"] + 1]
        return out

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        self.torn.append(target)


def _ctx(logged: list[str]) -> Ctx:
    return Ctx(
        params=Params.for_mode(quick=True), workdir="/nonexistent", engines={}, clients={},
        factories={}, log=logged.append,
    )  # fmt: skip


def test_interleaved_rounds_rotate_and_drop_the_warm_up() -> None:
    g = _FakeGroup()
    logged: list[str] = []
    out = g.measure_all(_ctx(logged), ["whaled", "dockerd", "floor"])
    # warm-up round, then 3 rounds; who goes first rotates
    assert g.calls == [
        "whaled", "dockerd", "floor",
        "whaled", "dockerd", "floor",
        "dockerd", "floor", "whaled",
        "floor", "whaled", "dockerd",
    ]  # fmt: skip
    assert out["whaled"]["a"] == [2.0, 3.0, 4.0]
    assert out["whaled"]["b"] == [20.0, 21.0, 30.0, 31.0, 40.0, 41.0]
    assert out["floor"]["a"] == [2.0, 3.0, 4.0]
    assert out["floor"]["b"] == Outcome.na("no b here")
    assert sorted(g.torn) == ["dockerd", "floor", "whaled"]
    assert logged == []


def test_interleaved_failures_stay_with_their_target() -> None:
    g = _FakeGroup()
    logged: list[str] = []
    out = g.measure_all(_ctx(logged), ["whaled", "missing", "broken", "flaky"])
    missing = out["missing"][ALL]
    assert isinstance(missing, Outcome)
    assert missing.status == "n/a"
    assert "POST /containers/create -> 404" in missing.reason
    assert out["broken"][ALL] == Outcome.error("boom")
    assert out["flaky"][ALL] == Outcome.error("died in round 2")
    assert out["whaled"]["a"] == [2.0, 3.0, 4.0]  # the others go on
    assert sorted(g.torn) == ["flaky", "whaled"]  # only what was set up is torn down
    assert any("boom" in line for line in logged)


def test_load_generator_against_the_floor_server(tmp_path: Path) -> None:
    ping = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    )

    async def scenario() -> tuple[dict[str, list[float] | str], Response, Response, Response]:
        stop = asyncio.Event()
        socks = {}
        servers = []
        for name, table in (("a", {b"/_ping": ping}), ("b", {b"/_ping": chunked})):
            sock = str(tmp_path / f"{name}.sock")
            servers.append(asyncio.create_task(serve(sock, table, stop)))
            socks[name] = sock
        for _ in range(200):
            if all(os.path.exists(s) for s in socks.values()):
                break
            await asyncio.sleep(0.01)
        try:
            res = await _load(
                socks, build_request("GET", "/v1.45/_ping"), concurrency=3, samples=2,
                window=0.05, warmup=0.02, expect_status=200, settle=0.0,
            )  # fmt: skip
            got_a = await fetch(socks["a"], "GET", "/_ping")
            got_b = await fetch(socks["b"], "GET", "/_ping?x=1")
            missing = await fetch(socks["a"], "GET", "/nope")
        finally:
            stop.set()
            await asyncio.gather(*servers)
        return res, got_a, got_b, missing

    res, got_a, got_b, missing = asyncio.run(scenario())
    for name in ("a", "b"):
        samples = res[name]
        assert isinstance(samples, list) and len(samples) == 2
        assert all(s > 0 for s in samples)
    assert (got_a.status, got_a.body, got_a.raw) == (200, b"OK", ping)
    assert (got_b.status, got_b.body, got_b.raw) == (200, b"[1,2]", chunked)
    assert missing.status == 404
    assert route_missing(missing.status, missing.body)
