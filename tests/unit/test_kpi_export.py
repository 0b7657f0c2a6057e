"""Business KPIs as Prometheus series: the shallowest slices, capped, kept current."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest

from services.common.events import event_time, leaf_of
from services.detector.engine.engine import Engine
from services.detector.metrics import KpiExport, Metrics
from tests.factories import traffic
from tests.unit.test_engine import CATALOG, SETTINGS


def test_the_last_window_leaves_kpis_of_the_shallowest_slices() -> None:
    engine = Engine(CATALOG, replace(SETTINGS, kpi_slices=4, min_slice_volume=0))
    for e in traffic(3, rate=60):
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()
    kpis = engine.evaluator.kpis
    slices = {key for _, key in kpis}
    assert "*" in slices and len(slices) == 4
    assert all(key == "*" or key.count("=") == 1 for key in slices)
    observed, expected, low, high = kpis[("order_count", "*")]
    assert observed > 0 and low <= expected <= high


def test_the_export_follows_the_slices_a_partition_shows() -> None:
    registry = CollectorRegistry()
    export = KpiExport(Metrics.create(registry, CATALOG.names).kpis)
    export.update(0, {("gmv", "*"): (10.0, 12.0, 8.0, 16.0), ("gmv", "region=eu"): (1, 2, 0, 3)})
    export.update(1, {("gmv", "region=us"): (5.0, 5.0, 4.0, 6.0)})
    text = generate_latest(registry).decode()
    assert 'opswatch_kpi_observed{metric="gmv",slice="all-up"} 10.0' in text
    assert 'opswatch_kpi_expected_high{metric="gmv",slice="region=eu"} 3.0' in text
    export.update(0, {("gmv", "*"): (11.0, 12.0, 8.0, 16.0)})
    text = generate_latest(registry).decode()
    assert 'slice="region=eu"' not in text
    assert 'opswatch_kpi_observed{metric="gmv",slice="all-up"} 11.0' in text
    assert 'opswatch_kpi_expected_low{metric="gmv",slice="region=us"} 4.0' in text


def test_a_partition_gone_to_another_worker_leaves_no_series_behind() -> None:
    registry = CollectorRegistry()
    export = KpiExport(Metrics.create(registry, CATALOG.names).kpis)
    export.update(3, {("gmv", "*"): (10.0, 12.0, 8.0, 16.0)})
    export.update(3, {})  # revoked
    assert "opswatch_kpi_observed{" not in generate_latest(registry).decode()
