"""Evidence in nats from true rates: known cases by hand, and the generators' own rates."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.common.marketplace import Marketplace
from services.common.simulator import Simulator
from services.detector.evaluation.evidence import (
    evidence,
    kl_binomial,
    kl_poisson,
    llr_binomial,
    llr_poisson,
    window_llr,
)


def test_binomial_evidence_by_hand() -> None:
    # 100 trials, rate 0.1 -> 0.5: 100 (0.5 ln 5 + 0.5 ln(0.5 / 0.9))
    assert kl_binomial(100, 0.5, 0.1) == pytest.approx(51.08, abs=0.01)
    assert kl_binomial(100, 0.1, 0.1) == 0.0
    assert kl_binomial(10, 0.0, 0.2) == pytest.approx(10 * math.log(1 / 0.8))  # stops


def test_poisson_evidence_by_hand() -> None:
    assert kl_poisson(0.0, 10.0) == 10.0  # a stop: the expected count itself
    assert kl_poisson(20.0, 10.0) == pytest.approx(20 * math.log(2) - 10)
    assert kl_poisson(7.0, 7.0) == 0.0


def test_realised_evidence_of_the_expected_counts_is_the_evidence() -> None:
    # drawn exactly as the changed rate expects, a window's realised ratio is its KL
    assert llr_binomial(50, 100, 0.5, 0.1) == pytest.approx(kl_binomial(100, 0.5, 0.1))
    assert llr_poisson(20, 20.0, 10.0) == pytest.approx(kl_poisson(20.0, 10.0))
    # what the normal rate expects speaks against the change
    assert llr_poisson(10, 20.0, 10.0) < 0
    assert llr_binomial(10, 100, 0.5, 0.1) < 0
    # a stop: no order is the expected count's worth, one order refutes it
    assert llr_poisson(0, 0.0, 10.0) == pytest.approx(10.0)
    assert llr_poisson(1, 0.0, 10.0) < -10


def test_realised_evidence_of_sampled_windows_averages_the_evidence() -> None:
    rng = np.random.default_rng(3)
    draws = [llr_poisson(k, 6.0, 10.0) for k in rng.poisson(6.0, 20_000)]
    assert float(np.mean(draws)) == pytest.approx(kl_poisson(6.0, 10.0), rel=0.05)


class Stops:
    """4 paid orders and 40 sessions a window; paid orders stop in [stop_from, stop_to)."""

    def __init__(self, stop_from: float, stop_to: float) -> None:
        self.span = (stop_from, stop_to)

    def expected(
        self, slice_: Mapping[str, str], start: float, end: float, incidents: bool = True
    ) -> dict[str, float]:
        stopped = incidents and self.span[0] <= start < self.span[1]
        paid = 0.0 if stopped else 4.0
        return {
            "sessions": 40.0,
            "checkouts": 5.0,
            "paid": paid,
            "failed": 5.0 - paid,
            "cancelled": 0.0,
            "churn": 0.0,
            "feedback": 0.0,
            "negative": 0.0,
            "complaints": 0.0,
            "users": 30.0,
        }


def test_evidence_sums_the_windows_of_the_incident() -> None:
    gen = Stops(900.0, 1800.0)  # three windows of 300 s
    assert evidence(gen, {}, "order_count", 900.0, 1800.0, 300) == pytest.approx(12.0)
    conversion = 3 * kl_binomial(40, 0.0, 0.1)
    assert evidence(gen, {}, "conversion_rate", 900.0, 1800.0, 300) == pytest.approx(conversion)
    assert evidence(gen, {}, "active_users", 900.0, 1800.0, 300) == 0.0


def test_a_windows_realised_evidence_reads_the_metrics_quantities() -> None:
    gen = Stops(900.0, 1800.0)
    changed, normal = gen.expected({}, 900, 1200), gen.expected({}, 900, 1200, incidents=False)
    assert window_llr("order_count", 0, 0, changed, normal) == pytest.approx(4.0)
    # conversion: paid of sessions; checkout conversion: paid of checkouts
    assert window_llr("conversion_rate", 0, 40, changed, normal) == pytest.approx(
        kl_binomial(40, 0.0, 0.1)
    )
    assert window_llr("checkout_conversion", 0, 5, changed, normal) == pytest.approx(
        kl_binomial(5, 0.0, 0.8)
    )
    assert window_llr("conversion_rate", 0, 0, changed, normal) == 0.0  # no session, no news
    with pytest.raises(KeyError):
        window_llr("returning_user_rate", 1, 2, changed, normal)


START = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize("kind", [Simulator, Marketplace])
def test_the_generators_rates_are_what_they_produce(kind: type[Simulator | Marketplace]) -> None:
    gen = kind(START, timedelta(hours=6), seed=5, sessions_per_minute=120)
    events = list(gen.events())
    slice_ = {"channel": events[0]["channel"]}
    mine = [e for e in events if e["channel"] == slice_["channel"]]
    # up to the last half hour: what a session does later is cut off at the end
    until = START.timestamp() + 5.5 * 3600
    want = gen.expected(slice_, START.timestamp(), until)
    cut = (START + timedelta(hours=5.5)).isoformat().replace("+00:00", "")
    early = [e for e in mine if e["ts"] < cut]
    sessions = sum(1 for e in early if e.get("action") == "session_start")
    paid = sum(1 for e in early if e.get("status") == "paid")
    assert sessions == pytest.approx(want["sessions"], rel=0.06)
    assert paid == pytest.approx(want["paid"], rel=0.15)
