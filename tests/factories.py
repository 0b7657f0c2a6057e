"""Test factories: events and event streams built from a few parameters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.simulator import Incident, Simulator

T0 = datetime(2026, 3, 2, tzinfo=UTC)
_ids = itertools.count()


def event(kind: str = "activity", at: datetime = T0, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "event_id": f"t-{next(_ids)}",
        "ts": at.isoformat().replace("+00:00", "Z"),
        "user_id": "u-1",
        "region": "eu",
        "channel": "web",
        "platform": "ios",
    }
    if kind == "activity":
        base |= {"session_id": "s-1", "action": "session_start"}
    elif kind == "order":
        base |= {"order_id": "o-1", "status": "paid", "amount": 10.0, "currency": "EUR"}
    else:
        base |= {"rating": 4}
    base.update(fields)
    return base


def traffic(
    hours: float,
    seed: int = 7,
    rate: float = 100.0,
    incidents: list[Incident] | None = None,
    start: datetime = T0,
) -> list[dict[str, Any]]:
    sim = Simulator(
        start,
        timedelta(hours=hours),
        seed=seed,
        sessions_per_minute=rate,
        incidents=incidents or [],
    )
    return list(sim.events())


def outage(
    slice_: dict[str, str], at: timedelta, duration: timedelta, magnitude: float = 0.9
) -> Incident:
    return Incident(
        family="conversion", slice=slice_, start=T0 + at, duration=duration, magnitude=magnitude
    )
