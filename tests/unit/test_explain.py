"""Stage three: false discovery rate, the level that explains a change, the lifecycle."""

from __future__ import annotations

from typing import Any

from services.detector.engine.evaluate import EngineSettings, Report
from services.detector.engine.explain import AlertBook, benjamini_hochberg, breakdown, explain

W = 300
T = 1772445600


def cand(slice_key: str, excess: float, p: float = 1e-9, sustained: bool = False) -> dict[str, Any]:
    return {
        "metric": "conversion_rate",
        "slice": slice_key,
        "p": p,
        "sustained": sustained,
        "excess": excess,
        "observed": 0.01,
        "expected": 0.05,
        "low": 0.03,
        "high": 0.07,
        "n": 1000.0,
        "score": 0.9,
        "severity": "critical",
        "baseline": "quasi-binomial",
    }


def test_fdr_keeps_what_survives_the_step_up_and_sustained_shifts() -> None:
    found = [cand("a", -1, 1e-8), cand("b", -1, 1e-4), cand("c", -1, 0.2, sustained=True)]
    kept = benjamini_hochberg(found, tests=100, q=1e-3)
    assert [c["slice"] for c in kept] == ["a", "c"]


def test_a_change_inside_one_pair_is_raised_on_that_pair_with_its_leaves_as_drivers() -> None:
    flagged = [
        cand("*", -100),
        cand("region=eu", -92),
        cand("channel=web", -85),
        cand("region=eu,channel=web", -80),
        cand("region=eu,channel=web,platform=ios", -30),
        cand("region=eu,channel=web,platform=android", -28),
    ]
    [(root, drivers)] = explain(flagged, share=0.6)
    assert root["slice"] == "region=eu,channel=web"
    assert {d["slice"] for d in drivers} == {
        "region=eu,channel=web,platform=ios",
        "region=eu,channel=web,platform=android",
    }


def test_a_change_everywhere_is_raised_all_up_naming_the_slices_that_drive_it() -> None:
    flagged = [cand("*", -100), cand("region=eu", -50), cand("region=us", -45)]
    [(root, drivers)] = explain(flagged, share=0.6)
    assert root["slice"] == "*"
    assert [d["slice"] for d in drivers] == ["region=eu", "region=us"]


def book() -> AlertBook:
    return AlertBook(EngineSettings(resolve_after=3), ("0", "1"), "v1")


def window(
    b: AlertBook, start: int, by_source: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = []
    for source in ("0", "1"):
        found = by_source.get(source, [])
        alerts += b.add(source, Report(start + W, start, {"conversion_rate": 50}, found))
    return alerts


def test_a_window_is_decided_once_every_source_has_reported_it() -> None:
    b = book()
    assert b.add("0", Report(T + W, T, {"conversion_rate": 50}, [cand("region=eu", -5)])) == []
    alerts = b.add("1", Report(T + W, T, {"conversion_rate": 50}, []))
    assert [a["status"] for a in alerts] == ["firing"]


def test_one_alert_per_anomaly_updated_then_resolved_with_a_stable_id() -> None:
    b = book()
    fired = window(b, T, {"0": [cand("region=eu", -5)]})
    again = window(b, T + W, {"1": [cand("region=eu", -6)]})
    assert fired[0]["id"] == again[0]["id"]
    assert again[0]["windows"] == 2
    assert window(b, T + 2 * W, {}) == []
    assert window(b, T + 3 * W, {}) == []
    [resolved] = window(b, T + 4 * W, {})
    assert resolved["status"] == "resolved"
    assert resolved["id"] == fired[0]["id"]
    assert resolved["resolved_at"] is not None
    replayed = window(book(), T, {"0": [cand("region=eu", -5)]})
    assert replayed[0]["id"] == fired[0]["id"]


def all_up_drop() -> dict[str, Any]:
    """All-up conversion at 3.5% on 1,000 sessions where its baseline expects 5%."""
    return {**cand("*", -15.0), "observed": 0.035, "expected": 0.05, "n": 1000.0}


def test_a_shift_of_traffic_towards_a_low_converting_channel_is_called_mix() -> None:
    census = {  # (sessions, paid orders the channel's own baseline expects)
        "channel=web": (300.0, 24.0),  # web converts at 8%, but lost traffic ...
        "channel=app": (700.0, 11.0),  # ... to app, at 1.6%, where rates held
        "region=eu": (1000.0, 50.0),
    }
    split = breakdown(all_up_drop(), census)
    assert split is not None
    assert split["dimension"] == "channel"
    assert split["cause"] == "mix"
    assert round(split["mix"], 6) == -15.0
    assert round(split["within_rates"], 6) == 0.0


def test_a_rate_that_fell_inside_a_channel_is_called_rates() -> None:
    census = {"channel=web": (600.0, 36.0), "channel=app": (400.0, 14.0)}
    split = breakdown(all_up_drop(), census)
    assert split is not None
    assert split["cause"] == "rates"
    assert round(split["within_rates"], 6) == -15.0


def test_no_breakdown_when_a_sub_slice_is_not_tracked() -> None:
    assert breakdown(all_up_drop(), {"channel=web": (600.0, 36.0)}) is None
