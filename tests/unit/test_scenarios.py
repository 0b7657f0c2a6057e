"""The scenario suites' bookkeeping: what counts as the incident's slice, and the graded
suite's report."""

from __future__ import annotations

import pytest

from services.detector.evaluation.graded import (
    QUICK,
    Clean,
    Row,
    Verdict,
    format_row,
    format_summary,
    summarise,
)
from services.detector.evaluation.graded import SUITE as GRADED
from services.detector.evaluation.scenarios import CLEAN, SUITE, compatible


@pytest.mark.parametrize(
    ("alert", "incident", "expected"),
    [
        ({"region": "eu", "channel": "web"}, {"region": "eu", "channel": "web"}, True),
        ({"region": "eu"}, {"region": "eu", "channel": "web"}, True),  # a roll-up containing it
        ({}, {"region": "eu"}, True),  # all-up
        ({"region": "eu", "channel": "web", "platform": "ios"}, {"region": "eu"}, True),
        ({"region": "na"}, {"region": "eu"}, False),
        ({"region": "eu", "channel": "app"}, {"region": "eu", "channel": "web"}, False),
    ],
)
def test_alert_slices_compatible_with_the_incident(
    alert: dict[str, str], incident: dict[str, str], expected: bool
) -> None:
    assert compatible(alert, incident) is expected


def test_the_suite_covers_the_issue_and_has_clean_runs() -> None:
    assert len(SUITE) >= 12
    assert {s.name for s in CLEAN} >= {"clean", "holiday surge (no ratio alert)"}
    assert all(s.metrics for s in SUITE)


def _row(
    nats: float,
    ours: float | None,
    theirs: float | None,
    shape: str = "drop",
    oracle: float | None = 0.0,
) -> Row:
    def verdict(delay: float | None) -> Verdict:
        return Verdict(delay is not None, delay, 0, 0)

    return Row(
        "simulator",
        60.0,
        f"count {shape} at {nats:g}",
        "count",
        shape,
        {"region": "eu"},
        0.33,
        nats,
        "order_count",
        24.0,
        True,
        verdict(ours),
        verdict(theirs),
        oracle,
    )


def test_the_graded_report_puts_both_detectors_side_by_side() -> None:
    rows = [
        _row(35.0, 2.0, 6.0, oracle=1.0),
        _row(8.0, None, 9.0, oracle=None),
        _row(60.0, 5.0, 3.0, oracle=2.0),
        _row(22.0, None, None, oracle=None),
    ]
    clean = [Clean("simulator", 60.0, 1.5, 100, 100, 1, 2, 1)]
    summary = summarise(rows, clean, threshold=9.5, oracle_threshold=15.2)
    line = format_row(rows[1])
    assert "8.0n" in line and "missed" in line and "9 w" in line
    report = summary.to_json()
    assert {"opswatch", "textbook"} <= report["rows"][0].keys()
    assert report["false_alerts_per_day_per_100_slices"] == {
        "opswatch": pytest.approx(1 / 1.5),
        "textbook": pytest.approx(1 / 1.5),
    }
    bands = {(b["low"], b["high"]): b for b in report["bands"]}
    assert bands[(5.0, 10.0)]["opswatch_recall"] == 0.0
    assert bands[(5.0, 10.0)]["textbook_recall"] == 1.0
    assert bands[(20.0, 50.0)]["opswatch_recall"] == 0.5
    assert bands[(20.0, 50.0)]["oracle_recall"] == 0.5
    assert bands[(5.0, 10.0)]["oracle_recall"] == 0.0
    assert summary.found_from_20_nats == {
        "scenarios": 3,
        "opswatch": 2,
        "textbook": 2,
        "oracle": 2,
    }
    # the 60-nat scenario: 5 windows against the textbook's 3 breaks "textbook + 1"
    assert not summary.targets.delay_within_textbook_plus_1
    # the 22-nat miss, which the oracle misses as well, and not the 8-nat one
    assert not summary.targets.detected_from_20_nats
    missed = [f for f in summary.targets.failures if "missed" in f]
    assert len(missed) == 1 and "22 nats (the oracle too)" in missed[0]
    assert summary.both_detected_median_delay_windows == {"opswatch": 3.5, "textbook": 4.5}
    assert summary.targets.median_delay_within_textbook
    text = "\n".join(format_summary(summary))
    assert "opswatch" in text and "textbook" in text and "NO" in text
    assert "oracle 2" in text and "15.2 nats" in text


def test_the_graded_suite_spans_every_shape_and_kind() -> None:
    assert {(s.kind, s.shape) for s in GRADED} == {
        (k, sh)
        for k in ("ratio", "count", "sum", "users")
        for sh in ("stop", "drop", "spike", "creep")
    }
    assert set(QUICK) < set(GRADED)
    assert len({s.name for s in GRADED}) == len(GRADED)
