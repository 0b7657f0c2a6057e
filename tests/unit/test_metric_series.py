"""Metric event series judged end to end: per name and slice, in event-time windows,
by the seasonal-level detector, through FDR, the cardinality guard, alerts, the
chart ring and the KPIs, in one engine, in stages and across a snapshot."""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from services.common.events import event_time, leaf_of
from services.detector.engine.aggregate import Acc, Samples
from services.detector.engine.calendar import load_calendar
from services.detector.engine.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from services.detector.engine.detectors import LevelDetector, Observation
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings
from services.detector.replay import replay
from services.detector.stages import StageOne, StageThree, StageTwo
from tests.factories import T0

SETTINGS = EngineSettings()
DAY = 86400

Shape = Callable[[float, np.random.Generator], float]  # seconds from T0 -> a sample


def catalog(tmp_path: Path, declarations: str) -> Catalog:
    path = tmp_path / "metrics.yaml"
    path.write_text(DEFAULT_CATALOG.read_text() + "metric_events:\n  names:\n" + declarations)
    return load_catalog(path)


def samples(
    name: str, shape: Shape, days: float, every: int = 60, seed: int = 1, **dims: str
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(days * DAY / every)):
        at = T0 + timedelta(seconds=i * every)
        out.append(
            {
                "type": "metric",
                "event_id": f"{name}-{'-'.join(dims.values())}-{i}",
                "ts": at.isoformat().replace("+00:00", "Z"),
                "name": name,
                "value": round(shape(i * every, rng), 3),
                "unit": "min",
                **dims,
            }
        )
    return out


def delivery(creep_at: float | None = None) -> Shape:
    """Minutes to deliver: 30 with a daily rhythm and noise; from ``creep_at`` on,
    creeping up to 60 over an hour."""

    def shape(t: float, rng: np.random.Generator) -> float:
        value = 30.0 + 5.0 * math.sin(2 * math.pi * t / DAY) + rng.normal(0.0, 2.0)
        if creep_at is not None and t >= creep_at:
            value += 30.0 * min(1.0, (t - creep_at) / 3600)
        return value

    return shape


CREEP_AT = 3 * DAY + 10 * 3600  # the fourth day, at ten


def replayed(events: list[dict[str, Any]], cat: Catalog) -> list[dict[str, Any]]:
    lines = b"".join(orjson.dumps(e) + b"\n" for e in sorted(events, key=event_time))
    sink = io.BytesIO()
    replay(io.BytesIO(lines), sink, cat, SETTINGS)
    return [orjson.loads(line) for line in sink.getvalue().splitlines()]


def test_a_delivery_time_that_creeps_up_in_one_region_alerts_there_with_a_band(
    tmp_path: Path,
) -> None:
    cat = catalog(tmp_path, "    delivery_minutes: {alert_on: up, unit: min, severity: critical}\n")
    creeping = samples("delivery_minutes", delivery(CREEP_AT), 4, region="eu")
    clean = samples("delivery_minutes", delivery(), 4, seed=2, region="na")
    alerts = replayed(creeping + clean, cat)
    assert alerts
    assert {(a["metric"], tuple(a["slice"].items())) for a in alerts} == {
        ("delivery_minutes", (("region", "eu"),))
    }
    first = alerts[0]
    started = event_time({"ts": first["started_at"]}) - T0.timestamp()
    assert CREEP_AT <= started <= CREEP_AT + 1800  # within half an hour of the creep
    assert first["status"] == "firing" and first["direction"] == "up"
    assert first["expected_low"] < first["expected"] < first["expected_high"] < first["observed"]
    assert 25 < first["expected"] < 40  # what the region's delivery time is, at that hour
    assert first["severity"] == "critical"  # as the catalog declares for the name
    assert first["baseline"] == "seasonal-level"
    assert first["series"]  # the chart: the windows up to the alert, with their band


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_clean_series_raises_no_alert_over_days(seed: int) -> None:
    alerts = replayed(samples("delivery_minutes", delivery(), 5, seed=seed), load_catalog())
    assert alerts == []


def test_alert_on_down_leaves_a_rise_alone(tmp_path: Path) -> None:
    creeping = samples("delivery_minutes", delivery(CREEP_AT), 4, region="eu")
    assert replayed(creeping, catalog(tmp_path, "    delivery_minutes: {alert_on: both}\n"))
    assert replayed(creeping, catalog(tmp_path, "    delivery_minutes: {alert_on: down}\n")) == []


def peaks(t: float, rng: np.random.Generator) -> float:
    """A queue sampled every minute at about 100; on the fourth day from ten to noon,
    the second sample of each five minutes peaks at 400 (the last one never does)."""
    surge = CREEP_AT <= t < CREEP_AT + 2 * 3600 and int(t // 60) % 5 == 1
    return (400.0 if surge else 100.0) + rng.normal(0.0, 3.0)


@pytest.mark.parametrize(("summary", "alerts"), [("max", True), ("last", False)])
def test_a_window_is_summed_up_as_declared(tmp_path: Path, summary: str, alerts: bool) -> None:
    cat = catalog(tmp_path, f"    support_queue: {{summary: {summary}}}\n")
    found = replayed(samples("support_queue", peaks, 4), cat)
    assert bool(found) is alerts
    assert all(a["slice"] == {} for a in found)  # no dimensions: the all-up series


def test_samples_sum_up_and_merge_in_any_order() -> None:
    one, two, three = Samples.of(10.0, 100.0), Samples.of(50.0, 110.0), Samples.of(20.0, 120.0)
    window = one.merge(two).merge(three)
    assert [window.summary(how) for how in ("last", "max", "sum", "mean")] == [20, 50, 80, 80 / 3]
    # partials of two stage-one sources: the last is the later sample, whichever comes first
    cat = load_catalog()
    nothing = [0.0] * len(cat.count_slots)  # a slice of series alone counts no event
    early = Acc([*nothing], [], {"q": one.merge(three)})
    late = Acc([*nothing], [], {"q": two})
    for first, second in ((early, late), (late, early)):
        merged = Acc.from_json(orjson.loads(orjson.dumps(first.to_json())), cat)
        merged.merge(Acc.from_json(orjson.loads(orjson.dumps(second.to_json())), cat))
        assert merged.series["q"] == window
    # at the same time, the larger value: the same whatever the order
    tie = Samples.of(7.0, 120.0)
    assert three.merge(tie).last == tie.merge(three).last == 20.0


def test_a_slice_without_series_sends_the_partial_it_always_did() -> None:
    plain = Acc([1.0, 2.0], [])
    assert plain.to_json() == {"c": [1.0, 2.0], "d": []}


def run_partitioned(events: list[dict[str, Any]], cat: Catalog, partitions: int) -> list[Any]:
    """Kafka mode's stages, partials and reports passed as the bytes they travel as."""
    ones = [StageOne(p, cat, SETTINGS, partitions) for p in range(partitions)]
    twos = [StageTwo(q, cat, SETTINGS, partitions) for q in range(partitions)]
    three = StageThree(cat, SETTINGS, partitions)
    alerts: list[Any] = []
    for e in events:
        p = zlib.crc32("|".join(leaf_of(e)).encode()) % partitions
        for out in ones[p].on_event(e, event_time(e), leaf_of(e), "topic-" + e["type"]):
            assert out.partition is not None
            for report in twos[out.partition].on_message(out.value):
                alerts += three.on_message(report)
    return alerts


def run_engine(events: list[dict[str, Any]], cat: Catalog, cut: int | None = None) -> list[Any]:
    """One engine; with ``cut``, snapshotted there and resumed in a new one."""
    engine = Engine(cat, SETTINGS)
    alerts: list[Any] = []
    for i, e in enumerate(events):
        if i == cut:
            snap = orjson.loads(orjson.dumps(engine.snapshot()))
            engine = Engine(cat, SETTINGS)
            engine.restore(snap)
        engine.add(e, event_time(e), leaf_of(e))
        alerts += engine.poll()
    return alerts + engine.flush()


def three_regions() -> list[dict[str, Any]]:
    """One region's delivery time creeps up; each series is read by one of three
    stage-one partitions."""
    events = samples("delivery_minutes", delivery(CREEP_AT), 4, region="eu")
    events += samples("delivery_minutes", delivery(), 4, seed=2, region="na", channel="web")
    events += samples("delivery_minutes", delivery(), 4, seed=3, region="apac")
    return sorted(events, key=event_time)


def test_stages_judge_series_as_one_engine_does(tmp_path: Path) -> None:
    cat = catalog(tmp_path, "    delivery_minutes: {alert_on: up}\n")
    events = three_regions()
    straight = run_engine(events, cat)
    assert straight
    key = lambda a: (a["id"], a["updated_at"], a["status"])  # noqa: E731
    assert sorted(run_partitioned(events, cat, 3), key=key) == sorted(straight, key=key)


def test_a_snapshot_keeps_the_series_state() -> None:
    cat = load_catalog()
    events = three_regions()
    straight = run_engine(events, cat)
    assert straight
    cut = next(i for i, e in enumerate(events) if event_time(e) >= T0.timestamp() + CREEP_AT)
    assert run_engine(events, cat, cut=cut + 3) == straight  # in the middle of a window
    fresh = Engine(cat, SETTINGS)  # what a restart without the state would have missed
    for e in events[cut:]:
        fresh.add(e, event_time(e), leaf_of(e))
        assert fresh.poll() == []


def test_every_series_counts_against_the_cardinality_guard() -> None:
    settings = EngineSettings(max_slices=3)
    engine = Engine(load_catalog(), settings)
    regions = ("eu", "na", "apac", "latam", "mea")
    events = [
        e
        for name in ("stock_level", "refunds")
        for region in regions
        for e in samples(name, lambda t, rng: 5.0, 0.1, every=300, region=region)
    ]
    for e in sorted(events, key=event_time):
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    engine.flush()
    evaluator = engine.evaluator
    assert evaluator.tracked == 3 and not evaluator.slices
    assert evaluator.unjudged["max_slices"] > 0
    windows = int(0.1 * DAY / 300)
    assert evaluator.unjudged["max_slices"] == (2 * len(regions) - 3) * (windows - 1)


def test_a_series_sampled_every_quarter_hour_is_tested_charted_and_shown() -> None:
    engine = Engine(load_catalog(), SETTINGS)
    level: Shape = lambda t, rng: 100.0 + rng.normal(0, 1) + (40 if t >= 2 * DAY else 0)  # noqa: E731
    events = samples("stock_level", level, 2.5, every=900, region="eu")
    reports, alerts = [], []
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        closed = engine.aggregator.advance()
        for window in closed:
            for key, acc in window.partials.items():
                engine.evaluator.add_partial(window.start, key, acc)
        if closed:
            found = engine.evaluator.advance("local", engine.aggregator.watermark or 0)
            reports += found
            for report in found:
                alerts += engine.book.add("local", report)
            # on the dashboard in every window, with or without a sample in it
            assert engine.evaluator.kpis[("stock_level", "region=eu")][0] > 90
    tested = [r.tests.get("stock_level", 0) for r in reports if r.start is not None]
    assert sum(tested) > 0 and max(tested) == 1  # a test of its own in the windows judged
    assert alerts and alerts[0]["metric"] == "stock_level"
    chart = alerts[0]["series"]
    assert chart[-1][1] == pytest.approx(140, abs=5)
    # windows without a sample are gaps in the chart, not its start again
    assert len(chart) == 48 and [p[1] is None for p in chart[-6:]] == [True, True, False] * 2


def test_the_detector_needs_no_range_given() -> None:
    """The same series in any unit: the same p-values, learned from the series alone."""
    detector = LevelDetector()

    def judged(unit: float) -> float:
        rng = np.random.default_rng(6)
        state = detector.init_state()
        for i in range(2 * 288):
            x = (50.0 + 5.0 * math.sin(i / 288 * 2 * math.pi) + rng.normal(0, 1)) * unit
            obs = Observation(x, 1, hour=(i // 12) % 24, weekday=i // 288)
            state = detector.learn(state, obs)
        return detector.score(state, Observation(56.0 * unit, 1, hour=0, weekday=2)).p_up

    assert 1e-9 < judged(1.0) < 1e-2  # six standard deviations out
    assert judged(1e-4) == pytest.approx(judged(1.0), rel=1e-6)
    assert judged(1e7) == pytest.approx(judged(1.0), rel=1e-6)


def queue(stuck_at: float | None = None) -> Shape:
    """A support queue read every five minutes: tickets come in (more by day) and a
    share of the open ones is closed each minute, so it runs on from where it was;
    from ``stuck_at`` on, for two hours, nobody closes any."""
    open_tickets = [10.0]

    def shape(t: float, rng: np.random.Generator) -> float:
        for minute in range(5):
            now = t + 60 * minute
            rate = 0.4 + 0.3 * math.sin(2 * math.pi * now / DAY)
            stuck = stuck_at is not None and stuck_at <= now < stuck_at + 7200
            closed = 0 if stuck else rng.binomial(int(open_tickets[0]), 0.03)
            open_tickets[0] += rng.poisson(rate) - closed
        return open_tickets[0]

    return shape


def test_a_queue_that_runs_on_from_where_it_was_is_not_taken_for_shifts() -> None:
    """Its windows come in runs: an hour long is twelve windows, not twelve pieces
    of evidence. Counting them as such raised dozens of alerts a day on a queue
    like this one."""
    for seed in (1, 2, 3):
        events = samples("support_queue", queue(), 5, every=300, seed=seed, region="eu")
        assert replayed(events, load_catalog()) == []
    stuck = samples("support_queue", queue(CREEP_AT), 4, every=300, seed=1, region="eu")
    alerts = replayed(stuck, load_catalog())
    assert alerts and alerts[0]["direction"] == "up"
    started = event_time({"ts": alerts[0]["started_at"]}) - T0.timestamp()
    assert CREEP_AT <= started <= CREEP_AT + 7200


def test_a_mean_of_few_samples_is_judged_as_such() -> None:
    """A delivery time sampled every minute with orders: five samples a window by
    day, one at night, each as noisy. The night's lone sample strays further than
    the day's mean of five, as it should, and is not taken for a shift; the same
    series doubling is."""

    def sparse_at_night(creep_at: float | None) -> list[dict[str, Any]]:
        events = samples("delivery_minutes", delivery(creep_at), 5, seed=6, region="eu")
        rng = np.random.default_rng(9)
        return [e for e in events if 8 <= event_time(e) % DAY / 3600 < 22 or rng.random() < 0.2]

    def noisy(creep_at: float | None) -> list[dict[str, Any]]:
        rng = np.random.default_rng(7)
        out = sparse_at_night(creep_at)
        for e in out:
            e["value"] = round(e["value"] * rng.lognormal(0.0, 0.3), 3)
        return out

    assert replayed(noisy(None), load_catalog()) == []
    alerts = replayed(noisy(CREEP_AT), load_catalog())
    assert alerts and alerts[0]["direction"] == "up"


def test_a_series_sampled_less_often_than_windows_close_keeps_one_alert() -> None:
    """A level read every half hour that falls from 100 to 10 for six hours: one
    alert for the whole fall, not one per reading (the windows between readings
    say nothing of it, so they do not resolve it)."""
    fall = (3 * DAY + 10 * 3600, 3 * DAY + 16 * 3600)

    def level(t: float, rng: np.random.Generator) -> float:
        return (10.0 if fall[0] <= t < fall[1] else 100.0) + rng.normal(0.0, 2.0)

    events = samples("stock_level", level, 4, every=1800, region="eu")
    alerts = replayed(events, load_catalog())
    assert len({a["id"] for a in alerts}) == 1
    firing = [a for a in alerts if a["status"] == "firing"]
    assert len(firing) >= 12  # each reading of the fall, at least
    resolved = [a for a in alerts if a["status"] == "resolved"]
    assert (
        len(resolved) == 1
        and event_time({"ts": resolved[0]["resolved_at"]}) > T0.timestamp() + fall[1]
    )


def test_a_count_that_sits_at_zero_moves_by_whole_ones() -> None:
    """An error count at 0 for days, now and then 1: a 1 is its resolution, not a
    change beyond all its history; twenty errors a window for an hour is."""

    def errors(burst_at: float | None) -> Shape:
        def shape(t: float, rng: np.random.Generator) -> float:
            if burst_at is not None and burst_at <= t < burst_at + 3600:
                return 20.0
            return float(rng.random() < 0.01)

        return shape

    quiet = samples("app_errors", errors(None), 5, every=300, seed=4)
    assert replayed(quiet, load_catalog()) == []
    burst = samples("app_errors", errors(CREEP_AT), 4, every=300, seed=4)
    alerts = replayed(burst, load_catalog())
    assert alerts and alerts[0]["direction"] == "up"
    assert event_time({"ts": alerts[0]["started_at"]}) - T0.timestamp() == CREEP_AT


def test_a_metric_event_cannot_take_a_catalog_metrics_name() -> None:
    """An alert names a metric by its name: a series named conversion_rate would be
    judged as the catalog's conversion rate. Such an event is refused."""
    events = samples("conversion_rate", delivery(), 0.1, region="eu")
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    refused: list[str] = []
    stats = replay(
        io.BytesIO(lines),
        io.BytesIO(),
        load_catalog(),
        SETTINGS,
        on_invalid=lambda _, message: refused.append(message),
    )
    assert len(refused) == len(events) and "catalog metric" in refused[0]
    assert stats.events == 0 and stats.invalid == len(events)


def test_a_calendar_exclude_leaves_a_series_alone_and_untracked(tmp_path: Path) -> None:
    """Windows inside an exclude entry are neither judged nor learned from, and a
    series first seen there takes no room under the cardinality guard."""
    start = (T0 + timedelta(seconds=CREEP_AT)).isoformat().replace("+00:00", "Z")
    path = tmp_path / "calendar.yaml"
    path.write_text(
        "events:\n"
        f"  - {{name: Migration, start: '{start}', end: '2030-01-01T00:00:00Z',"
        " effect: exclude, slices: [{region: eu}]}\n"
    )
    cat = load_catalog()
    calendar = load_calendar(path, cat.names)
    creeping = samples("delivery_minutes", delivery(CREEP_AT), 4, region="eu")
    stock = samples("stock_level", delivery(), 4, seed=3, region="eu")
    late = [e for e in stock if event_time(e) - T0.timestamp() >= CREEP_AT]
    lines = b"".join(orjson.dumps(e) + b"\n" for e in sorted(creeping + late, key=event_time))
    sink = io.BytesIO()
    stats = replay(io.BytesIO(lines), sink, cat, SETTINGS, calendar=calendar)
    assert sink.getvalue() == b""  # the creep is inside the entry
    assert stats.tracked_series == 1  # delivery_minutes only: stock_level came inside it


def test_the_dashboard_shows_the_shallowest_series_before_and_after_a_restart() -> None:
    settings = EngineSettings(kpi_slices=2)
    flat: Shape = lambda t, rng: 50.0 + rng.normal(0, 1)  # noqa: E731
    events = samples("stock_level", flat, 0.2, every=300, region="eu", channel="web")
    events += samples("stock_level", flat, 0.2, every=300, seed=2, region="na")
    events += samples("stock_level", flat, 0.2, every=300, seed=3)  # all-up
    events += samples("stock_level", flat, 0.2, every=300, seed=4, region="apac")
    events = sorted(events, key=event_time)
    engine = Engine(load_catalog(), settings)
    half = len(events) // 2
    for e in events[:half]:
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    shallowest = {("stock_level", "*"), ("stock_level", "region=apac")}
    assert set(engine.evaluator.kpis) == shallowest
    resumed = Engine(load_catalog(), settings)
    resumed.restore(orjson.loads(orjson.dumps(engine.snapshot())))
    for e in events[half:]:
        resumed.add(e, event_time(e), leaf_of(e))
        resumed.poll()
    assert set(resumed.evaluator.kpis) == shallowest
