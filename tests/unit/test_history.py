"""Returning and lapsed users from per-user history, and windows without events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.common.events import event_time, leaf_of
from services.detector.engine.aggregate import Aggregator, ClosedWindow
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings
from services.detector.engine.slices import ALL_UP
from tests.factories import T0, event, outage, traffic

CATALOG = load_catalog()
RETURNING = next(m for m in CATALOG.metrics if m.name == "returning_user_rate")
LAPSED = next(m for m in CATALOG.metrics if m.name == "lapsed_users")
ACTIVE = RETURNING.den or 0


def visits(agg: Aggregator, *when: tuple[str, timedelta]) -> list[ClosedWindow]:
    closed = []
    for user, at in when:
        e = event("activity", T0 + at, user_id=user)
        agg.add(e, event_time(e), leaf_of(e))
        closed += agg.advance()
    return closed


def users(window: ClosedWindow, slot: int) -> int:
    return int(window.partials[ALL_UP].distinct[slot].count())


def by_start(closed: list[ClosedWindow]) -> dict[timedelta, ClosedWindow]:
    return {timedelta(seconds=w.start - T0.timestamp()): w for w in closed}


def test_a_user_seen_within_the_day_before_is_returning() -> None:
    closed = by_start(
        visits(
            Aggregator(CATALOG),
            ("a", timedelta(0)),
            ("b", timedelta(0)),
            ("a", timedelta(hours=20)),  # back within a day
            ("b", timedelta(hours=30)),  # back after more than a day
            ("c", timedelta(hours=40)),  # moves the watermark past both
        )
    )
    at20, at30 = closed[timedelta(hours=20)], closed[timedelta(hours=30)]
    assert (users(at20, RETURNING.num), users(at20, ACTIVE)) == (1, 1)
    assert (users(at30, RETURNING.num), users(at30, ACTIVE)) == (0, 1)


def test_a_user_lapses_once_in_the_window_a_day_of_silence_is_reached() -> None:
    closed = visits(
        Aggregator(CATALOG),
        ("a", timedelta(0)),
        ("b", timedelta(0)),
        ("b", timedelta(hours=12)),  # b stays active, a does not
        ("c", timedelta(hours=50)),
    )
    lapses = {
        timedelta(seconds=w.start - T0.timestamp()): users(w, LAPSED.num)
        for w in closed
        if users(w, LAPSED.num)
    }
    # a lapses in the window a day after its last; b a day after its second visit,
    # in windows without any event
    assert lapses == {timedelta(days=1): 1, timedelta(hours=36): 1}


def test_user_history_survives_a_snapshot() -> None:
    agg = Aggregator(CATALOG)
    visits(agg, ("a", timedelta(0)), ("b", timedelta(hours=1)))
    copy = Aggregator(CATALOG)
    copy.restore(agg.snapshot())
    later = [("a", timedelta(hours=5)), ("c", timedelta(hours=30))]
    assert [
        (w.start, users(w, RETURNING.num), users(w, LAPSED.num)) for w in visits(copy, *later)
    ] == [(w.start, users(w, RETURNING.num), users(w, LAPSED.num)) for w in visits(agg, *later)]


def alerts_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = Engine(CATALOG, EngineSettings())
    out: list[dict[str, Any]] = []
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        out += engine.poll()
    return out + engine.flush()


def test_a_channel_that_goes_silent_alerts_when_the_silence_starts() -> None:
    silence = T0 + timedelta(hours=30)
    events = [
        e
        for e in traffic(32, rate=60)
        if not (e["channel"] == "web" and event_time(e) >= silence.timestamp())
    ]
    started = sorted(
        a["started_at"]
        for a in alerts_of(events)
        if a["slice"].get("channel") == "web" and a["metric"] == "active_users"
    )
    assert started
    assert started[0] == silence.isoformat().replace("+00:00", "Z")


def engine_over(events: list[dict[str, Any]], settings: EngineSettings) -> Engine:
    engine = Engine(CATALOG, settings)
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    engine.flush()
    return engine


def test_the_cardinality_guard_tracks_at_most_max_slices_and_counts_the_rest() -> None:
    engine = engine_over(traffic(2, rate=60), EngineSettings(max_slices=5))
    assert len(engine.evaluator.slices) == 5
    assert engine.evaluator.unjudged["max_slices"] > 0


def test_a_slice_is_tracked_once_it_has_shown_enough_volume() -> None:
    stray = event("activity", T0 + timedelta(minutes=30), region="mars")
    events = sorted([*traffic(2, rate=60), stray], key=event_time)
    engine = engine_over(events, EngineSettings())
    tracked = engine.evaluator.slices
    assert "region=eu" in tracked
    assert not any("mars" in key for key in tracked)
    assert any("mars" in key for key in engine.evaluator.untracked)
    assert engine.evaluator.unjudged["low_volume"] > 0


def test_a_ratio_alert_says_the_rate_fell_within_its_sub_slices() -> None:
    incident = outage({"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=1))
    alerts = alerts_of(traffic(19, rate=100, incidents=[incident]))
    pair = [
        a
        for a in alerts
        if a["slice"] == {"region": "eu", "channel": "web"} and a["metric"] == "conversion_rate"
    ]
    assert pair
    assert pair[0]["breakdown"]["cause"] == "rates"
    assert pair[0]["breakdown"]["dimension"] == "platform"
