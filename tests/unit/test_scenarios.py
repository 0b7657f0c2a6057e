"""The scenario suite's bookkeeping: what counts as the incident's slice."""

from __future__ import annotations

import pytest

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
