"""The simulator's metric series (``--metric-series``): each region's stock, delivery
time and support queue, and the incidents that change them."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from services.cli import app as cli
from services.common.simulator import REGIONS, Family, Incident, Simulator, ground_truth
from tests.contract.test_schemas import model_accepts, schema_accepts

START = datetime(2026, 3, 2, tzinfo=UTC)
NAMES = {"inventory_units", "delivery_minutes", "support_queue"}
Readings = dict[tuple[str, str], list[tuple[str, float]]]


def run(hours: float, rate: float = 60.0, series: bool = True, **kw: Any) -> list[dict[str, Any]]:
    sim = Simulator(
        START, timedelta(hours=hours), seed=3, sessions_per_minute=rate, series=series, **kw
    )
    return list(sim.events())


def readings(events: list[dict[str, Any]]) -> Readings:
    """(name, region) -> [(ts, value)] in time order."""
    out: Readings = defaultdict(list)
    for e in events:
        if e["type"] == "metric":
            out[(e["name"], e["region"])].append((e["ts"], e["value"]))
    return out


def incident(family: Family, region: str, at: float, hours: float, **kw: Any) -> Incident:
    """An incident in one region, ``at`` hours into the runs, for ``hours``."""
    start = START + timedelta(hours=at)
    return Incident(
        family=family, slice={"region": region}, start=start, duration=timedelta(hours=hours), **kw
    )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "")


def test_the_series_are_metric_events_of_the_contract_with_plausible_values() -> None:
    events = run(6)
    metric = [e for e in events if e["type"] == "metric"]
    assert {e["name"] for e in metric} == NAMES
    for event in metric:
        assert schema_accepts(event, is_alert=False), event
        assert model_accepts(event, is_alert=False), event
    assert len({e["event_id"] for e in events}) == len(events)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    series = readings(events)
    assert {region for _, region in series} == {region for region, _ in REGIONS}
    for region, _ in REGIONS:
        stock = [v for _, v in series[("inventory_units", region)]]
        assert len(stock) == 6 * 12  # a reading every five minutes
        assert min(stock) > 0
        assert stock == sorted(stock, reverse=True)  # drawn down; no restock before 06:00
        assert stock[0] > stock[-1]
        queue = [v for _, v in series[("support_queue", region)]]
        assert min(queue) >= 0 and all(v == int(v) for v in queue)
        delivery = [v for _, v in series[("delivery_minutes", region)]]
        assert min(delivery) > 0
        assert 20 < sum(delivery) / len(delivery) < 120  # minutes, on average


def test_the_series_leave_the_traffic_as_it_is_without_them() -> None:
    with_series = run(3)
    without = run(3, series=False)
    assert not any(e["type"] == "metric" for e in without)
    assert [e for e in with_series if e["type"] != "metric"] == without


def test_the_stock_follows_the_paid_orders_and_is_refilled_every_morning() -> None:
    drop = incident("orders", "apac", 0, 4, magnitude=0.9)
    clean = readings(run(7))
    fewer_orders = readings(run(7, incidents=[drop]))

    def sold(series: Readings, region: str) -> float:  # 00:00 to 03:55
        stock = series[("inventory_units", region)]
        assert stock[47][0].startswith("2026-03-02T03:55")
        return stock[0][1] - stock[47][1]

    # four hours of almost no orders in apac leave its stock, not the others'
    assert sold(fewer_orders, "apac") < 0.3 * sold(clean, "apac")
    for region in ("na", "eu", "latam"):
        assert 0.7 < sold(fewer_orders, region) / sold(clean, region) < 1.4
    for region, _ in REGIONS:
        stock = clean[("inventory_units", region)]
        before, at_six = stock[71], stock[72]
        assert at_six[0].startswith("2026-03-02T06:00")
        assert at_six[1] > 1.4 * before[1]
        assert at_six[1] >= max(v for _, v in stock)  # full


def test_a_stockout_holds_its_regions_stock_at_zero_for_its_span_and_only_there() -> None:
    out = incident("stockout", "eu", 1, 2, magnitude=1.0)
    series = readings(run(4, incidents=[out]))
    begin, end = iso(out.start), iso(out.start + out.duration)
    for region, _ in REGIONS:
        for ts, value in series[("inventory_units", region)]:
            if region == "eu" and begin <= ts < end:
                assert value == 0, ts
            else:
                assert value > 0, (region, ts)
    assert ground_truth([out]) == [
        {
            "family": "stockout",
            "slice": {"region": "eu"},
            "start": "2026-03-02T01:00:00Z",
            "end": "2026-03-02T03:00:00Z",
            "magnitude": 1.0,
        }
    ]


def test_a_delivery_creep_raises_the_regions_delivery_time_over_its_span() -> None:
    creep = incident("delivery", "na", 12, 2, magnitude=1.0, ramp=True)
    clean = readings(run(15))
    crept = readings(run(15, incidents=[creep]))
    begin, end = iso(creep.start), iso(creep.start + creep.duration)

    def mean(series: Readings, region: str, lo: str, hi: str) -> float:
        values = [v for ts, v in series[("delivery_minutes", region)] if lo <= ts < hi]
        return sum(values) / len(values)

    quarters = [iso(creep.start + q * creep.duration / 4) for q in range(5)]
    ratios = [
        mean(crept, "na", lo, hi) / mean(clean, "na", lo, hi) for lo, hi in pairwise(quarters)
    ]
    assert ratios == sorted(ratios)  # it creeps
    assert 1.0 < ratios[0] < 1.3 and 1.7 < ratios[-1] < 2.0  # to twice the usual
    assert mean(crept, "na", "2026-03-02T11", begin) == mean(clean, "na", "2026-03-02T11", begin)
    assert mean(crept, "na", end, "2026-03-02T15") == mean(clean, "na", end, "2026-03-02T15")
    for region in ("eu", "apac", "latam"):
        assert mean(crept, region, begin, end) == mean(clean, region, begin, end)


def test_series_incidents_take_a_region_or_everything() -> None:
    with pytest.raises(ValidationError, match="stockout incident's slice is a region"):
        Incident(
            family="stockout",
            slice={"region": "eu", "channel": "web"},
            start=START,
            duration=timedelta(hours=1),
        )
    everywhere = Incident(family="delivery", start=START, duration=timedelta(hours=1))
    series = readings(run(2, incidents=[everywhere]))
    clean = readings(run(2))
    for region, _ in REGIONS:
        key = ("delivery_minutes", region)
        pairs = list(zip(series[key], clean[key], strict=True))
        assert all(
            a == pytest.approx(1.5 * b, abs=0.02)  # both rounded
            for (ts, a), (_, b) in pairs
            if ts < "2026-03-02T01"
        )
        assert all(a == b for (ts, a), (_, b) in pairs if ts >= "2026-03-02T01")


def test_a_run_with_series_resumed_from_a_checkpoint_is_the_run_itself() -> None:
    fork = START + timedelta(hours=2)
    out = incident("stockout", "na", 2, 1, magnitude=1.0)

    def sim(*incidents: Incident) -> Simulator:
        return Simulator(
            START,
            timedelta(hours=4),
            seed=9,
            sessions_per_minute=30,
            series=True,
            incidents=incidents,
        )

    whole = list(sim(out).events())
    history = sim()
    before = list(history.events_until(fork))
    after = list(sim(out).resume(history.checkpoint()))
    assert before + after == whole
    assert any(e["type"] == "metric" for e in before)
    assert any(e.get("name") == "inventory_units" and e["value"] == 0 for e in after)


def test_simulate_writes_the_series_on_request_only(tmp_path: Path) -> None:
    schedule = tmp_path / "incidents.yaml"
    schedule.write_text(
        "incidents:\n"
        "  - {family: delivery, slice: {region: eu}, start: 2026-03-02T01:00:00Z,\n"
        "     duration: PT1H, magnitude: 1.0, ramp: true}\n"
    )
    common = ["simulate", "--start", "2026-03-02T00:00:00Z", "--duration", "2h"]
    common += ["--rate", "30", "--incidents", str(schedule)]
    plain, series = tmp_path / "plain.ndjson", tmp_path / "series.ndjson"
    assert CliRunner().invoke(cli, [*common, "--output", str(plain)]).exit_code == 0
    result = CliRunner().invoke(cli, [*common, "--metric-series", "--output", str(series)])
    assert result.exit_code == 0, result.output
    lines = series.read_bytes().splitlines()
    metric = [orjson.loads(line) for line in lines if b'"type":"metric"' in line]
    assert {e["name"] for e in metric} == NAMES
    assert b"\n".join(line for line in lines if b'"type":"metric"' not in line) + b"\n" == (
        plain.read_bytes()
    )
    truth = orjson.loads(Path(f"{series}.truth.json").read_bytes())
    assert [(t["family"], t["slice"]) for t in truth] == [("delivery", {"region": "eu"})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"incidents: [\n  - {family: delivery\n", "line 2: not valid YAML: while parsing"),
        (b"incidents:\n  - {family: caf\xe9}\n", "line 2: the incident file is not UTF-8 text"),
        (
            b"incidents:\n  - {family: delivery, start: 2026-03-02T01:00:00Z,\n"
            b"     duration: PT1H, magnitude: 50}\n",
            "line 3: incidents.0.magnitude: Input should be less than or equal to 10",
        ),
    ],
    ids=["bad-yaml", "not-utf8", "bad-magnitude"],
)
def test_a_bad_incident_file_stops_simulate_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    schedule = tmp_path / "incidents.yaml"
    schedule.write_bytes(content)
    output = tmp_path / "events.ndjson"
    result = CliRunner().invoke(
        cli, ["simulate", "--incidents", str(schedule), "--output", str(output)]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"bad simulation input: {schedule} {message}")
    assert result.stderr.count("\n") == 1 and not output.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "-5"], "--rate must be more than zero: -5"),
        (["--duration", "-5h"], "--duration must be more than zero: '-5h'"),
        (["--duration", "0s"], "--duration must be more than zero: '0s'"),
        (["--duration", "often"], "--duration: not a duration: 'often' (try 90s"),
        (
            ["--start", "0001-01-01T00:00:00Z"],
            "--start must be in 2000 or later: 0001-01-01T00:00:00Z "
            "(ingest and replay refuse events before 2000)",
        ),
        (
            ["--start", "2099-12-30T00:00:00Z", "--duration", "4d"],
            "--start 2099-12-30T00:00:00Z and --duration 4d must end by 2100",
        ),
        (["--start", "2026-03-02"], "--start: not a time with an offset: '2026-03-02'"),
        (["--batch", "0"], "--batch must be at least 1: 0"),
        (["--seed", "-1"], "--seed must be zero or more: -1"),
    ],
)
def test_simulate_refuses_options_it_cannot_use_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    output = tmp_path / "events.ndjson"
    result = CliRunner().invoke(cli, ["simulate", *args, "--output", str(output)])
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not output.exists()


def test_simulate_with_ingest_down_says_where_it_could_not_reach_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "sleep", lambda _: None)  # the retries, without their wait
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    args = ["simulate", "--duration", "1h", "--rate", "10", "--ingest-url", url]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"simulate: ingest could not be reached at {url} (11 tries): "
        "[Errno 111] Connection refused\n"
    )
    assert result.stdout == ""  # no ground truth for traffic that was not sent


def test_a_run_that_starts_at_any_second_reads_its_levels_every_five_minutes() -> None:
    sim = Simulator(
        START + timedelta(seconds=30),
        timedelta(hours=7),
        seed=3,
        sessions_per_minute=60.0,
        series=True,
    )
    series = readings(list(sim.events()))
    for region, _ in REGIONS:
        stock = series[("inventory_units", region)]
        assert len(stock) == 7 * 12 and len(series[("support_queue", region)]) == 7 * 12
        # refilled once, in the minute that holds 06:00
        refills = [now for (_, was), (now, value) in pairwise(stock) if value > 1.4 * was]
        six = START + timedelta(hours=6)
        assert len(refills) == 1
        assert abs(datetime.fromisoformat(refills[0]) - six) <= timedelta(seconds=90)
