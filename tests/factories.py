"""Test factories: events and event streams built from a few parameters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

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
    elif kind == "metric":
        del base["user_id"]
        base |= {"name": "stock_level", "value": 120.0, "unit": "items"}
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


class FakeClock:
    """A wall clock that moves only when told."""

    def __init__(self, now: datetime = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def detector_update(
    metric: str = "conversion_rate",
    slice_: dict[str, str] | None = None,
    start: datetime = datetime(2026, 3, 2, 17, 0, tzinfo=UTC),
    window: int = 0,
    status: str = "firing",
    windows: int | None = None,
    window_s: int = 300,
    **over: Any,
) -> dict[str, Any]:
    """An update as the detector publishes it: the episode that started at ``start``,
    in its ``window``-th window (0 is the first); resolved ones close that window."""
    from services.detector.engine.explain import alert_id, fingerprint

    slice_ = {"region": "eu", "channel": "web"} if slice_ is None else slice_
    key = ",".join(f"{k}={v}" for k, v in slice_.items()) or "*"
    fp = fingerprint(metric, key)
    w_start = start + timedelta(seconds=window * window_s)
    w_end = w_start + timedelta(seconds=window_s)
    body: dict[str, Any] = {
        "id": alert_id(fp, int(start.timestamp())),
        "fingerprint": fp,
        "metric": metric,
        "slice": slice_,
        "window_start": iso(w_start),
        "window_end": iso(w_end),
        "direction": "down",
        "observed": 0.01,
        "expected": 0.07,
        "expected_low": 0.05,
        "expected_high": 0.09,
        "n": 400.0,
        "p_value": 1e-9,
        "score": 0.9,
        "severity": "critical",
        "status": status,
        "started_at": iso(start),
        "updated_at": iso(w_end),
        "resolved_at": iso(w_end) if status == "resolved" else None,
        "windows": windows if windows is not None else window + 1,
    }
    body.update(over)
    return body


def stored(value: bytes) -> list[dict[str, Any]]:
    """The events of one event-topic record: one event, or a batch (what ingest writes)."""
    decoded = orjson.loads(value)
    return decoded if isinstance(decoded, list) else [decoded]
