"""`opswatch eval series`: its evidence is the generator's own, its generator is
reproducible, and opswatch is judged on it beside the textbook."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.config import OpswatchSettings
from services.detector.evaluation import series as suite

W = 300
START = 7 * suite.DAY_S + suite.INCIDENT_HOUR * 3600


def test_evidence_of_a_step_is_half_its_square_per_independent_window() -> None:
    # a reading every ten minutes: twelve independent windows with a reading in two hours
    step = suite.Incident("cold_room_c", "step", 1.0, None)
    assert suite.evidence(suite._shape("cold_room_c"), 0, step, START, W) == pytest.approx(12 * 0.5)
    creep = suite.Incident("cold_room_c", "creep", 1.0, None)
    assert suite.evidence(suite._shape("cold_room_c"), 0, creep, START, W) < 12 * 0.5 / 2


def test_a_series_that_runs_on_holds_less_evidence_than_independent_windows() -> None:
    backlog = suite._shape("backlog_orders")
    nats = suite.evidence(backlog, 0, suite.Incident(backlog.name, "step", 1.0, None), START, W)
    # the first window's innovation is its whole shift, each later one only what the
    # backlog did not carry on from the window before
    rho = 0.97**5
    assert 0.5 / (1 - rho**2) <= nats < 24 * 0.5 / 2


@pytest.mark.parametrize("target", [5.0, 20.0, 80.0])
def test_incidents_are_sized_to_their_evidence(target: float) -> None:
    for shape in suite.SHAPES:
        incident = suite.sized(shape, "step", target, START, W)
        assert suite.evidence(shape, 0, incident, START, W) == pytest.approx(target, rel=1e-6)


def test_the_generator_is_reproducible_and_an_incident_starts_when_it_says() -> None:
    a, b = suite.generate(2, seed=3), suite.generate(2, seed=3)
    assert all(np.array_equal(x.values, y.values) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].values, suite.generate(2, seed=4)[0].values)
    start = suite.DAY_S + suite.INCIDENT_HOUR * 3600
    for one in a:
        incident = suite.Incident(one.shape.name, "step", 3.0, None)
        hit = one.with_incident(incident, start, W, np.random.default_rng(0))
        changed = one.t[hit.values != one.values]
        outside = (changed < start) | (changed >= start + suite.INCIDENT_S)
        assert len(changed) and not outside.any()


def test_the_quick_suite_finds_a_stop_at_once_and_stays_quiet_on_clean_days() -> None:
    summary = suite.run_series(OpswatchSettings().engine(), quick=True)
    assert summary.clean_false_opswatch == 0  # the budget: 0.5 a day per 100 series
    stop = next(r for r in summary.rows if r.incident == "stop")
    assert stop.opswatch is not None and stop.opswatch <= 2
    assert all(r.false_alerts == 0 for r in summary.rows)
    assert len(suite.format_summary(summary)) == 1 + 3 + 1
