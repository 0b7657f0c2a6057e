"""The textbook CUSUM: quiet on a steady stream, quick on a clear step, calibrated on clean runs."""

from __future__ import annotations

import numpy as np

from services.detector.engine.aggregate import Acc, ClosedWindow
from services.detector.engine.catalog import Catalog, load_catalog
from services.detector.evaluation.textbook import (
    DAY_S,
    Textbook,
    calibrate,
    crossings,
    episodes,
)

W = 300
T0 = 1_772_409_600  # 2026-03-02 00:00 UTC
DAYS = 8


def window(
    catalog: Catalog, start: int, orders: float, sessions: float, paid: float
) -> ClosedWindow:
    """All-up only: ``orders`` paid orders for order_count, ``paid`` of ``sessions``
    for conversion_rate (the same slot: paid orders; they differ to test each alone)."""
    acc = Acc.empty(catalog)
    by_name = {m.name: m for m in catalog.metrics}
    count, conversion = by_name["order_count"], by_name["conversion_rate"]
    assert conversion.den is not None
    acc.counts[count.num] = orders
    acc.counts[conversion.den] = sessions
    if conversion.num != count.num:
        acc.counts[conversion.num] = paid
    return ClosedWindow(start, {"*": acc})


def run(
    step_at: int | None, orders_after: float = 20.0
) -> tuple[Textbook, list[int], dict[str, np.ndarray]]:
    catalog = load_catalog()
    book = Textbook(catalog, ["*"], W)
    end = T0 + DAYS * DAY_S
    for start in range(T0, end, W):
        stepped = step_at is not None and start >= step_at
        orders = orders_after if stepped else 20.0
        book.add(window(catalog, start, orders, 200.0, orders))
    starts, paths = book.statistics(T0 + 7 * DAY_S, end)
    return book, starts, paths


def test_a_constant_stream_never_raises_the_statistic() -> None:
    _, _, paths = run(step_at=None)
    assert max(float(p.max()) for p in paths.values()) == 0.0


def test_a_clear_step_is_found_within_two_windows_on_the_stepped_metrics() -> None:
    step = T0 + 7 * DAY_S + 12 * 3600
    book, starts, paths = run(step_at=step, orders_after=5.0)  # 20 -> 5 orders a window
    found = episodes(book.series, starts, paths, h=10.0)
    first = {e.series[1]: e for e in found}
    assert {"order_count", "conversion_rate"} <= first.keys()
    for name in ("order_count", "conversion_rate"):
        assert first[name].direction == "down"
        assert step <= first[name].start <= step + 2 * W
    assert all(e.start >= step for e in found)  # nothing before it


def test_an_upward_step_alerts_only_metrics_that_alert_upwards() -> None:
    step = T0 + 7 * DAY_S + 6 * 3600
    book, starts, paths = run(step_at=step, orders_after=60.0)
    metrics = {e.series[1] for e in episodes(book.series, starts, paths, h=10.0)}
    assert "order_count" in metrics  # alert_on: both
    assert "conversion_rate" not in metrics  # alert_on: down


def test_calibration_takes_the_smallest_threshold_within_the_allowance() -> None:
    path = np.zeros((6, 2))
    path[1, 0], path[2, 0], path[4, 1] = 3.0, 7.5, 4.2
    clean = [{"up": path, "down": np.zeros((6, 2))}]
    assert calibrate(clean, allowed=0) == 7.5  # above the largest excursion
    assert crossings(clean, 7.5) == 0
    assert calibrate(clean, allowed=1) == 4.2
    assert crossings(clean, 4.2) == 1
    assert calibrate(clean, allowed=2) == 1.0
