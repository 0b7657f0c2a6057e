"""The embedded demo (``make run``): its stock-out in the metric series, timed after half
a day of history and apart from the payment incident, and the catalog it judges them by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common.config import OpswatchSettings
from services.common.simulator import Simulator, ground_truth
from services.detector.embedded import DemoPlan, demo_catalog
from services.detector.engine.catalog import load_catalog
from tests.unit.test_simulator_series import iso, readings


@pytest.mark.parametrize("hour", [0, 6, 11, 17, 18, 23])
def test_the_demo_runs_out_of_stock_after_a_day_and_apart_from_the_payment_incident(
    hour: int,
) -> None:
    now = datetime(2026, 3, 4, hour, 30, tzinfo=UTC)
    plan = DemoPlan.around(now)
    out, pay = plan.stockout, plan.incident
    assert (out.family, out.slice, out.magnitude) == ("stockout", {"region": "eu"}, 1.0)
    assert out.start - plan.start >= timedelta(days=1)  # its hours seen on an earlier day
    assert out.start + out.duration <= pay.start  # no overlap
    assert pay.start + pay.duration <= now  # all of it replayed
    truth = ground_truth(plan.incidents)
    assert [t["family"] for t in truth] == ["stockout", "conversion"]


def test_the_demo_runs_out_of_stock_in_its_events() -> None:
    now = datetime(2026, 3, 4, 20, 0, tzinfo=UTC)
    plan = DemoPlan.around(now)
    out = plan.stockout
    sim = Simulator(
        plan.start, now - plan.start, sessions_per_minute=10, incidents=plan.incidents, series=True
    )
    stock = readings(list(sim.events()))[("inventory_units", "eu")]
    zero = [ts for ts, value in stock if value == 0]
    assert zero[0].startswith(iso(out.start)[:16])
    assert len(zero) == 24 and zero[-1] < iso(out.start + out.duration)


def test_the_demo_catalog_declares_the_series_and_leaves_the_built_in_one_alone(
    tmp_path: Path,
) -> None:
    built_in = load_catalog()
    catalog = demo_catalog(OpswatchSettings(metrics_file=None))
    assert catalog.names == built_in.names
    assert catalog.version != built_in.version
    inventory = catalog.series.of("inventory_units")
    assert (inventory.summary, inventory.alert_on, inventory.unit) == ("last", "down", "units")
    delivery = catalog.series.of("delivery_minutes")
    assert (delivery.summary, delivery.alert_on, delivery.unit) == ("mean", "up", "min")
    assert built_in.series.names == {}  # the goldens' config_version stays
    own = tmp_path / "metrics.yaml"
    own.write_text("version: 1\nmetrics:\n  orders:\n    kind: count\n    measure: {type: order}\n")
    assert demo_catalog(OpswatchSettings(metrics_file=own)).names == ("orders",)
