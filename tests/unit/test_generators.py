"""The generators the evaluation runs on: a second one unlike the simulator, and runs that
stop at a checkpoint and resume from it exactly."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.common.events import validate
from services.common.marketplace import Marketplace
from services.common.simulator import Incident, Simulator

START = datetime(2026, 3, 2, tzinfo=UTC)


def test_marketplace_events_follow_the_event_schema() -> None:
    events = list(Marketplace(START, timedelta(hours=3), seed=1, sessions_per_minute=80).events())
    kinds = Counter(e["type"] for e in events)
    assert kinds.keys() == {"activity", "order", "feedback"}
    for event in events:
        validate(event)  # raises on any breach of the contract
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


def test_marketplace_slices_are_its_own() -> None:
    market = Marketplace(START, timedelta(hours=1)).shares()
    simulated = Simulator(START, timedelta(hours=1)).shares()
    assert len(market) == 48
    assert sum(market.values()) == pytest.approx(1.0)
    assert not set(market) & set(simulated)
    # unequal, and not a product of per-dimension shares as the simulator's are
    assert max(market.values()) / min(market.values()) > 20
    regions = {r: sum(w for (rr, _, _), w in market.items() if rr == r) for r, _, _ in market}
    channels = {c: sum(w for (_, cc, _), w in market.items() if cc == c) for _, c, _ in market}
    platforms = {p: sum(w for (_, _, pp), w in market.items() if pp == p) for _, _, p in market}
    product = {k: regions[k[0]] * channels[k[1]] * platforms[k[2]] for k in market}
    assert max(abs(market[k] / product[k] - 1) for k in market) > 0.5


@pytest.mark.parametrize("kind", [Simulator, Marketplace])
def test_a_run_resumed_from_a_checkpoint_is_the_run_itself(
    kind: type[Simulator | Marketplace],
) -> None:
    fork = START + timedelta(hours=2)
    slice_ = {"channel": "web" if kind is Simulator else "ads"}
    incident = Incident(
        family="conversion",
        slice=slice_,
        start=fork + timedelta(minutes=30),
        duration=timedelta(hours=1),
        magnitude=0.7,
    )
    whole = list(
        kind(
            START, timedelta(hours=4), seed=9, sessions_per_minute=50, incidents=[incident]
        ).events()
    )
    history = kind(START, timedelta(hours=4), seed=9, sessions_per_minute=50)
    before = list(history.events_until(fork))
    after = list(
        kind(
            START, timedelta(hours=4), seed=9, sessions_per_minute=50, incidents=[incident]
        ).resume(history.checkpoint())
    )
    assert before + after == whole
    assert before and after
    clean = list(
        kind(START, timedelta(hours=4), seed=9, sessions_per_minute=50).resume(history.checkpoint())
    )
    cut = incident.start.isoformat().replace("+00:00", "")
    assert [e for e in clean if e["ts"] < cut] == [e for e in after if e["ts"] < cut]

    def failed(events: list[dict[str, object]]) -> int:
        return sum(1 for e in events if e.get("status") == "payment_failed")

    assert failed(after) > 2 * failed(clean)
