"""A two-day sale through the engine, with and without its calendar entry.

Two days of ordinary traffic to learn from, then a sale that doubles all-up traffic
for two days (``scenarios.sale``). The engine tracks the twelve slices it admits
first (all-up among them) at 20 sessions a minute, which keeps each run to about
ten seconds; the outage is all-up, so nothing it needs is left out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from services.common.simulator import Incident
from services.detector.engine.calendar import Calendar
from services.detector.engine.catalog import load_catalog
from services.detector.engine.evaluate import EngineSettings
from services.detector.evaluation.scenarios import (
    CONVERSION,
    SALE_AT,
    SALE_FOR,
    START,
    Run,
    first_updates,
    sale,
    sale_entry,
    traffic_updates,
)

CATALOG = load_catalog()
SETTINGS = EngineSettings(max_slices=12)
RATE = 20.0
OUTAGE_AT = SALE_AT + timedelta(days=1, hours=13)  # the sale's second afternoon
OUTAGE_FOR = timedelta(hours=2)
COUNTS = {m.name for m in CATALOG.metrics if m.kind in ("count", "sum")}


def outage() -> Incident:
    return Incident(
        family="conversion", start=OUTAGE_AT, duration=OUTAGE_FOR, magnitude=0.4, slice={}
    )


def started(alert: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(alert["started_at"].replace("Z", "+00:00"))


def run(
    incidents: list[Incident], until: datetime, calendar: Calendar | None = None
) -> list[dict[str, Any]]:
    """The first update of every alert started from the sale's start on."""
    return alerts_of(
        traffic_updates(incidents, until - START, CATALOG, SETTINGS, RATE, 42, calendar)
    )


def alerts_of(done: Run) -> list[dict[str, Any]]:
    return [a for a in first_updates(done.updates) if started(a) >= SALE_AT]


def first_delay(alerts: list[dict[str, Any]]) -> float:
    """Windows from the outage's start to the first conversion alert within it."""
    hits = [
        started(a)
        for a in alerts
        if a["metric"] in CONVERSION and OUTAGE_AT <= started(a) < OUTAGE_AT + OUTAGE_FOR
    ]
    assert hits, "the outage was not detected"
    return (min(hits) - OUTAGE_AT).total_seconds() / SETTINGS.window_s


@pytest.fixture(scope="module")
def sale_run() -> Run:
    """The sale with its expect entry, and a conversion outage on its second afternoon."""
    end = SALE_AT + SALE_FOR + timedelta(hours=1)
    calendar = Calendar.of([sale_entry()])
    return traffic_updates([sale(), outage()], end - START, CATALOG, SETTINGS, RATE, 42, calendar)


@pytest.fixture(scope="module")
def with_entry(sale_run: Run) -> list[dict[str, Any]]:
    return alerts_of(sale_run)


def test_a_sale_with_its_expect_entry_raises_nothing_but_the_outage(
    with_entry: list[dict[str, Any]],
) -> None:
    grace = OUTAGE_AT + OUTAGE_FOR + timedelta(hours=1)
    other = [
        (a["metric"], a["slice"], a["started_at"])
        for a in with_entry
        if not (a["metric"] in CONVERSION and OUTAGE_AT <= started(a) < grace)
    ]
    assert other == []
    assert all(a["calendar"]["name"] == "Spring sale" for a in with_entry)


def test_the_same_sale_without_its_entry_raises_count_alerts() -> None:
    alerts = run([sale()], SALE_AT + SALE_FOR)
    counted = {a["metric"] for a in alerts if SALE_AT <= started(a) < SALE_AT + SALE_FOR}
    assert counted & COUNTS, alerts
    assert all("calendar" not in a for a in alerts)


def test_an_outage_inside_the_sale_alerts_within_the_usual_delay(
    with_entry: list[dict[str, Any]],
) -> None:
    """Within two windows of the delay the same outage takes on an ordinary day."""
    ordinary = run([outage()], OUTAGE_AT + OUTAGE_FOR)
    assert first_delay(with_entry) <= first_delay(ordinary) + 2


def test_once_the_sale_ends_its_observed_effect_is_reported(sale_run: Run) -> None:
    """All-up, what the sale did against the ordinary baseline: twice the traffic."""
    effects = {e["metric"]: e for e in sale_run.effects if e["slice"] == "*"}
    # every metric past its warm-up (lapsed users warm up only as the sale starts)
    assert set(CATALOG.names) - set(effects) == {"lapsed_users"}
    for metric in ("active_users", "order_count", "gmv"):
        seen = effects[metric]["observed"] / effects[metric]["ordinary"]
        assert 1.7 <= seen <= 2.3, (metric, seen)
        assert effects[metric]["factor_set"] == 2.0
    assert effects["conversion_rate"]["factor_set"] is None
    assert {e["end"] for e in sale_run.effects} == {(SALE_AT + SALE_FOR).timestamp()}
