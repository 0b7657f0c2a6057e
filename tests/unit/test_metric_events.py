"""Metric events: carried through the detector's stages and replay without moving the
catalog's alerts, their topic never holding the watermark back unheard, and their
names bounded."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import orjson

from services.common.events import EventError, event_time, leaf_of
from services.detector.engine.evaluate import EngineSettings
from services.detector.replay import replay
from services.detector.stages import StageOne
from tests.factories import T0, event, outage, traffic
from tests.unit.test_engine import CATALOG, SETTINGS, run_engine, run_partitioned

TOPICS = {"order": "orders", "activity": "activity", "feedback": "feedback", "metric": "metrics"}
TYPES = {topic: etype for etype, topic in TOPICS.items()}


def with_metrics(events: list[dict[str, Any]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The events with one sample of each name a minute, in three slices, in time order."""
    start, end = event_time(events[0]), event_time(events[-1])
    samples = []
    minute = 0
    while start + minute * 60 < end:
        at = T0 + timedelta(seconds=start - T0.timestamp() + minute * 60)
        for i, name in enumerate(names):
            for dims in ({}, {"region": "eu"}, {"region": "na", "channel": "web"}):
                sample = event("metric", at, name=name, value=float(minute % 7 + i), **dims)
                for dim in ("region", "channel", "platform"):
                    if dim not in dims:
                        sample.pop(dim)
                samples.append(sample)
        minute += 1
    return sorted(events + samples, key=event_time)


def stage_one(sources: tuple[str, ...]) -> StageOne:
    return StageOne(0, CATALOG, SETTINGS, 2, sources, TYPES)


def test_metric_events_move_no_alert_of_the_catalog_in_one_engine_or_in_stages() -> None:
    events = traffic(
        6,
        rate=200,
        start=T0 + timedelta(hours=14),
        incidents=[
            outage({"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=1))
        ],
    )
    plain = run_engine(events)
    assert any(a["metric"] == "payment_failure_rate" for a in plain)
    mixed = with_metrics(events, ("stock_level", "delivery_minutes"))
    assert len(mixed) > len(events) + 1000
    assert run_engine(mixed) == plain
    key = lambda a: (a["id"], a["updated_at"], a["status"])  # noqa: E731
    streamed = run_partitioned(events, 3)
    assert sorted(run_partitioned(mixed, 3), key=key) == sorted(streamed, key=key)


def test_a_metric_topic_nobody_writes_to_holds_nothing_back() -> None:
    events = traffic(1, rate=60)
    without = stage_one(("orders", "activity", "feedback"))
    beside = stage_one(tuple(TOPICS.values()))
    for e in events:
        topic = TOPICS[e["type"]]
        assert without.on_event(e, event_time(e), leaf_of(e), topic) == beside.on_event(
            e, event_time(e), leaf_of(e), topic
        )
        assert beside.aggregator.ahead(15 * 60) == set()  # nothing paused for it
    assert beside.aggregator.watermark == without.aggregator.watermark is not None
    # idle, it leaves no catalog metric unjudged: the watermark markers name no type
    beside.mark_idle("metrics")
    out = []
    for etype in ("order", "activity", "feedback"):
        later = event(etype, T0 + timedelta(hours=1, minutes=20))
        out += beside.on_event(later, event_time(later), leaf_of(later), TOPICS[etype])
    markers = [orjson.loads(o.value) for o in out if o.key is None and b'"wm"' in o.value]
    assert markers and all("idle" not in m for m in markers)


def test_a_metric_topic_once_heard_from_counts_in_the_watermark() -> None:
    one = stage_one(tuple(TOPICS.values()))
    for e in traffic(1, rate=60):
        one.on_event(e, event_time(e), leaf_of(e), TOPICS[e["type"]])
    newest = max(one.aggregator.sources.marks.values())
    # first heard from well behind the others: nobody waited for it, so that sample is
    # late (counted), but the topic now holds the others until it catches up
    behind = event("metric", T0 + timedelta(minutes=20))
    one.on_event(behind, event_time(behind), leaf_of(behind), "metrics")
    assert one.aggregator.stats.late == 1
    assert one.aggregator.ahead(15 * 60) == {"orders", "activity", "feedback"}
    closing = event("metric", T0 + timedelta(seconds=newest - T0.timestamp() - 150))
    one.on_event(closing, event_time(closing), leaf_of(closing), "metrics")
    assert one.aggregator.ahead(15 * 60) == set()
    assert one.aggregator.stats.late == 1  # within the lateness of the slowest: taken
    assert one.aggregator.watermark == event_time(closing) - SETTINGS.lateness_s


def samples(names: list[str]) -> list[dict[str, Any]]:
    return [event("metric", T0 + timedelta(minutes=i), name=n) for i, n in enumerate(names)]


def test_names_beyond_the_limit_are_refused_in_stage_one_and_remembered() -> None:
    settings = EngineSettings(max_metric_names=2)
    one = StageOne(0, CATALOG, settings, 1, tuple(TOPICS.values()), TYPES)
    events = samples(["stock_level", "delivery_minutes", "refunds", "stock_level", "refunds"])
    _, refused = one.on_events(events, "metrics")
    assert [e["event_id"] for e, _ in refused] == [events[2]["event_id"], events[4]["event_id"]]
    assert all(isinstance(x, EventError) and x.reason == "metric_names" for _, x in refused)
    assert one.aggregator.stats.applied == 3
    again = StageOne(0, CATALOG, settings, 1, tuple(TOPICS.values()), TYPES)
    again.restore(one.snapshot())
    _, refused = again.on_events(samples(["refunds", "delivery_minutes"]), "metrics")
    assert len(refused) == 1


def test_replay_takes_metric_events_and_counts_names_beyond_the_limit() -> None:
    events = samples(["stock_level", "delivery_minutes", "refunds", "refunds", "stock_level"])
    lines = b"".join(orjson.dumps(e) + b"\n" for e in events)
    stats = replay(io.BytesIO(lines), io.BytesIO(), CATALOG, EngineSettings(max_metric_names=2))
    assert (stats.invalid, stats.refused_names, stats.events) == (0, 2, 3)


def test_a_catalog_metrics_name_is_refused_in_stage_one() -> None:
    one = StageOne(0, CATALOG, SETTINGS, 1, tuple(TOPICS.values()), TYPES)
    events = samples(["conversion_rate", "stock_level"])
    _, refused = one.on_events(events, "metrics")
    assert [e["event_id"] for e, _ in refused] == [events[0]["event_id"]]
    error = refused[0][1]
    assert isinstance(error, EventError) and error.reason == "schema"
    assert "catalog metric" in error.message
    assert one.metric_names.names == {"stock_level"}  # the refused name takes no room
