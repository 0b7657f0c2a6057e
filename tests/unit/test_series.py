"""Recent series: the detector's ring per slice and metric, sent with an alert's
first update, and each alert's series kept by alerting."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.charts import alert_plot
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import SERIES_KEPT, AlertStore
from services.common import contracts
from services.common.contracts import Alert
from services.common.events import event_time, leaf_of
from services.detector.engine import evaluate
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import SERIES_WINDOWS, EngineSettings, Ring, empty_ring
from tests.factories import T0, FakeClock, detector_update, iso, outage, traffic

CATALOG = load_catalog()
SETTINGS = EngineSettings()
W = SETTINGS.window_s


def point(i: int) -> tuple[float, float, float, float]:
    return (float(i), i + 0.5, float(i - 1), i + 2.0)


def test_the_ring_keeps_the_last_48_windows_in_order_and_restarts_after_a_gap() -> None:
    ring = empty_ring()
    for i in range(60):
        ring = ring.add(1000 + i * W, W, point(i))
    points = ring.points(W)
    assert len(points) == SERIES_WINDOWS == contracts.SERIES_WINDOWS
    assert points[0] == [1000 + 12 * W, *point(12)]
    assert points[-1] == [1000 + 59 * W, *point(59)]
    assert Ring.from_json(ring.to_json()).points(W) == points
    gap = ring.add(1000 + 70 * W, W, point(70))
    assert gap.points(W) == [[1000 + 70 * W, *point(70)]]


def test_a_value_that_is_not_a_number_becomes_null() -> None:
    ring = empty_ring().add(0, W, (math.nan, 0.1, 0.0, 0.2))
    assert ring.points(W) == [[0, None, 0.1, 0.0, 0.2]]


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    events = traffic(
        8,
        rate=200,
        start=T0 + timedelta(hours=12),
        incidents=[
            outage({"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=1))
        ],
    )
    engine = Engine(CATALOG, SETTINGS)
    out: list[dict[str, Any]] = []
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        out += engine.poll()
    return out


def test_an_alerts_first_update_carries_the_windows_before_it(
    alerts: list[dict[str, Any]],
) -> None:
    firsts = [a for a in alerts if a["status"] == "firing" and a["windows"] == 1]
    assert firsts
    for a in firsts:
        series = a["series"]
        assert 1 < len(series) <= SERIES_WINDOWS
        starts = [p[0] for p in series]
        assert starts == sorted(starts) and starts[-1] == a["window_start"]
        gaps = {datetime.fromisoformat(b) - datetime.fromisoformat(s) for s, b in pairwise(starts)}
        assert gaps == {timedelta(seconds=W)}
        last = series[-1][1:]
        mine = [a["observed"], a["expected"], a["expected_low"], a["expected_high"]]
        assert last == pytest.approx(mine, rel=1e-6, abs=1e-9)
        Alert.model_validate(a)
    later = [a for a in alerts if a["windows"] > 1 or a["status"] == "resolved"]
    assert later and all("series" not in a for a in later)


def test_the_ring_survives_a_snapshot() -> None:
    ev = evaluate.Evaluator(CATALOG, SETTINGS, ("s",))
    ev.slices["*"] = evaluate.SliceState(0, rings={"gmv": empty_ring().add(0, W, point(3))})
    again = evaluate.Evaluator(CATALOG, SETTINGS, ("s",))
    again.restore(ev.snapshot())
    assert again.slices["*"].rings["gmv"].points(W) == [[0, *point(3)]]


def test_alerting_keeps_each_alerts_series_bounded_with_its_own_windows(store_url: str) -> None:
    clock = FakeClock()
    families = {"conversion_rate": "conversion"}
    store = AlertStore(store_url)
    book = AlertBook(store, families, Routing(AlertingConfig(), families), clock)
    start = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    before = [
        [iso(start - timedelta(seconds=W * k)), 0.07, 0.07, 0.05, 0.09] for k in range(3, 0, -1)
    ]
    # the ring's float32 copy of the alert's own window gives way to the update's values
    ring_copy = [iso(start), 0.0100001, 0.07, 0.05, 0.09]
    first = detector_update(start=start, series=[*before, ring_copy])
    Alert.model_validate(first)
    assert book.ingest(first) == "opened"
    second = detector_update(start=start, window=1, observed=0.02)
    book.ingest(second)
    series = store.series(first["id"])
    assert series == [
        *([*p, False] for p in before),
        [iso(start), 0.01, 0.07, 0.05, 0.09, True],
        [iso(start + timedelta(seconds=W)), 0.02, 0.07, 0.05, 0.09, True],
    ]
    assert "series" not in (store.get(first["id"]) or {})
    for w in range(2, SERIES_KEPT + 10):
        book.ingest(detector_update(start=start, window=w))
    kept = store.series(first["id"])
    assert len(kept) == SERIES_KEPT
    assert kept[-1][0] == iso(start + timedelta(seconds=W * (SERIES_KEPT + 9)))


def test_a_reopened_alerts_history_keeps_its_earlier_windows_anomalous(store_url: str) -> None:
    store = AlertStore(store_url)
    with store.transaction() as conn:
        store.add_series(conn, "a" * 32, [["t1", 1.0, 1.0, 0.0, 2.0, True]])
        store.add_series(conn, "a" * 32, [["t1", 1.5, 1.0, 0.0, 2.0, False]])
    assert store.series("a" * 32) == [["t1", 1.5, 1.0, 0.0, 2.0, True]]


def test_the_engines_alerts_chart_their_own_numbers(
    alerts: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The simulated outage's alerts, through alerting's intake, charted."""
    families = {m.name: m.family for m in CATALOG.metrics}
    book = AlertBook(
        AlertStore(f"sqlite:///{tmp_path / 'a.db'}"),
        families,
        Routing(AlertingConfig(), families),
        FakeClock(),
    )
    app = create_app(book, CollectorRegistry())
    for a in alerts:
        assert app.state.intake.handle(a) == "stored"
    first = next(a for a in alerts if a["status"] == "firing" and a["windows"] == 1)
    client = TestClient(app)
    chart = client.get(f"/v1/alerts/{first['id']}/chart.png")
    assert chart.status_code == 200 and chart.content[:8] == b"\x89PNG\r\n\x1a\n"
    body = client.get(f"/v1/alerts/{first['id']}").json()
    data = alert_plot(body, book.store.series(first["id"]), "UTC")
    history = first["series"][:-1]
    firing = [a for a in alerts if a["id"] == first["id"] and a["status"] == "firing"]
    n = len(history)
    plain = [math.nan if p[1] is None else p[1] for p in history]
    assert data.observed[:n] == pytest.approx(plain, nan_ok=True)
    assert data.observed[n : n + len(firing)] == [a["observed"] for a in firing]
    assert data.expected[n : n + len(firing)] == [a["expected"] for a in firing]
    assert data.anomalous[: n + len(firing)] == [False] * n + [True] * len(firing)
