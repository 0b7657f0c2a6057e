"""Realistic traffic: sessions, orders, churn and feedback for many slices of unequal size.

Slices differ in size by three orders of magnitude (a large region on the web
and a small one through a partner channel on Android), traffic follows a daily
and a weekly cycle, and users come back. Incidents from a schedule change the
behaviour of one slice (or of everything) for a while: a payment outage, an
ordering drop, a churn wave, a run of bad feedback. Output is roughly
time-ordered, the way real exports are: a session's events land minutes after
it starts.

On request (``series=True``) each region also reports metric events, the numbers
other systems measure: its stock (drawn down by the paid orders, restocked every
morning), its delivery time (the mean of the minute's deliveries) and its support
queue (fed by complaints). They draw on a random state of their own, so the
traffic is the same with them or without.
"""

from __future__ import annotations

import heapq
import math
import pickle
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.special import zeta

from services.detector.engine.yamlfile import first_error, line_of, located, read_yaml

REGIONS = (("na", 0.40), ("eu", 0.33), ("apac", 0.19), ("latam", 0.08))
CHANNELS = (("web", 0.50), ("app", 0.33), ("partner", 0.11), ("email", 0.06))
PLATFORMS = (("desktop", 0.42), ("ios", 0.33), ("android", 0.25))

Family = Literal[
    "conversion",
    "orders",
    "cancel",
    "churn",
    "feedback",
    "complaint",
    "traffic",
    "returning",
    "campaign",
    "stockout",
    "delivery",
]
SERIES_FAMILIES = ("stockout", "delivery")  # they change a region's metric series only


class Incident(BaseModel):
    """One scheduled incident: a family of behaviour changes in a slice for a while."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Family
    slice: dict[Literal["region", "channel", "platform"], str] = Field(default_factory=dict)
    start: datetime
    duration: timedelta
    magnitude: Annotated[float, Field(ge=-1.0, le=10.0)] = 0.5
    ramp: bool = False  # grow from nothing to ``magnitude`` over the duration (a drift)

    @model_validator(mode="after")
    def _series_by_region(self) -> Incident:
        if self.family in SERIES_FAMILIES and self.slice.keys() - {"region"}:
            raise ValueError(f"a {self.family} incident's slice is a region (or everything)")
        return self

    def strength(self, t: float) -> float:
        if not self.ramp:
            return self.magnitude
        return self.magnitude * (t - self.start.timestamp()) / self.duration.total_seconds()

    def covers(self, leaf: tuple[str, str, str], t: float) -> bool:
        start = self.start.timestamp()
        if not start <= t < start + self.duration.total_seconds():
            return False
        region, channel, platform = leaf
        want = self.slice
        return (
            want.get("region", region) == region
            and want.get("channel", channel) == channel
            and want.get("platform", platform) == platform
        )


class IncidentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    incidents: list[Incident]


class IncidentsError(ValueError):
    """An incident file that cannot be read, or that is wrong: one line naming the file."""


def load_incidents(path: Path) -> list[Incident]:
    """The incidents of a file, or IncidentsError naming the file, the line and the field."""
    text, raw = read_yaml(path, "incident file", IncidentsError)
    try:
        return IncidentFile.model_validate(raw).incidents
    except ValidationError as exc:
        loc, message = first_error(exc)
        raise IncidentsError(located(path, line_of(text, loc), loc, message)) from None


@dataclass(frozen=True)
class Leaf:
    region: str
    channel: str
    platform: str
    weight: float
    checkout_p: float
    pay_p: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.region, self.channel, self.platform)


def leaves(rng: np.random.Generator) -> list[Leaf]:
    out = []
    for region, rw in REGIONS:
        for channel, cw in CHANNELS:
            for platform, pw in PLATFORMS:
                checkout = float(np.clip(rng.normal(0.09, 0.015), 0.04, 0.15))
                pay = float(np.clip(rng.normal(0.88, 0.03), 0.75, 0.97))
                out.append(Leaf(region, channel, platform, rw * cw * pw, checkout, pay))
    return out


def seasonality(t: float, tz_offset_h: float = 0.0) -> float:
    """Traffic multiplier: a daily cycle (trough at 04:00, peak 19:00) and quieter weekends."""
    local = t + tz_offset_h * 3600
    hour = (local % 86400) / 3600
    daily = 0.55 - 0.45 * math.cos((hour - 4.0) / 24 * 2 * math.pi)
    weekday = int(local // 86400 + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekly = 0.8 if weekday >= 5 else 1.0
    return max(0.08, daily) * weekly


def _iso(t: float) -> str:
    ms = round((t % 1) * 1000)
    if ms == 1000:
        t, ms = math.floor(t) + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + f".{ms:03d}Z"


QUANTITIES = (
    "sessions",
    "checkouts",
    "paid",
    "failed",
    "cancelled",
    "churn",
    "feedback",
    "negative",
    "complaints",
    "users",
)
DIMS = ("region", "channel", "platform")
_NO_EFFECT = {
    "traffic": 1.0,
    "pay": 1.0,
    "checkout": 1.0,
    "cancel": 1.0,
    "churn": 1.0,
    "bad_feedback": 0.0,
    "complaint": 0.0,
    "new_user": 0.0,
    "one_off": 0.0,
}


SERIES_EVERY = 300  # seconds between two readings of a level (stock, support queue)
RESTOCK_AT = 6 * 3600  # seconds into the UTC day when every region's stock is refilled


def _holds(t: float, every: int, offset: int = 0) -> bool:
    """Whether the minute from ``t`` holds a time ``offset`` past a multiple of
    ``every`` (a run may start at any second)."""
    return math.ceil((t - offset) / every) * every + offset < t + 60


USD_PER_UNIT = 25.0  # an order's units: its amount in these, at least one
DELIVERY_MINUTES = {"na": 42.0, "eu": 38.0, "apac": 55.0, "latam": 64.0}
DELIVERY_SPREAD = 0.4  # one delivery's time: its region's mean times a factor of this sd
QUEUE_KEEP = 0.97  # the share of a support queue's tickets still open a minute later
TICKETS_PER_SESSION = 0.01  # tickets that are not complaints left on the site
SERIES_UNITS = {"inventory_units": "units", "delivery_minutes": "min", "support_queue": "tickets"}


@dataclass
class _Series:
    """The metric series' state: its own random state (the traffic's is left alone),
    each region's stock and support queue, and the current minute's tallies."""

    rng: np.random.Generator
    capacity: dict[str, float]
    stock: dict[str, float]
    queue: dict[str, int]
    sold: dict[str, float] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)
    complaints: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    @classmethod
    def start(cls, seed: int, slices: Sequence[Leaf], rate: float, t: float) -> _Series:
        """Stock for one and a half times a region's usual day of paid orders, drawn
        down since the morning's restock; support queues as long as usual."""
        units = math.exp(3.8 + 0.6**2 / 2) / USD_PER_UNIT  # the mean order's, near enough
        since = (t - RESTOCK_AT) % 86400 / 86400
        capacity = {region: 0.0 for region, _ in REGIONS}
        for leaf in slices:
            # 0.55: the daily cycle's mean (see seasonality)
            paid_per_day = rate * leaf.weight * leaf.checkout_p * leaf.pay_p * 0.55 * 1440
            capacity[leaf.region] += 1.5 * paid_per_day * units
        capacity = {r: float(max(50, round(c))) for r, c in capacity.items()}
        stock = {r: float(round(c * (1 - since / 1.5))) for r, c in capacity.items()}
        rng = np.random.default_rng([seed, 0x5E7])
        inflow = rate * seasonality(t) * TICKETS_PER_SESSION / (1 - QUEUE_KEEP)
        queue = {region: round(inflow * share) for region, share in REGIONS}
        return cls(rng, capacity, stock, queue)

    def tally(self, ev: Mapping[str, Any]) -> None:
        """Count what the series follow in one traffic event: sales and complaints."""
        region = ev["region"]
        if ev["type"] == "order" and ev["status"] == "paid":
            self.paid[region] = self.paid.get(region, 0) + 1
            self.sold[region] = self.sold.get(region, 0.0) + max(
                1, round(ev["amount"] / USD_PER_UNIT)
            )
        elif ev.get("category") == "complaint":
            self.complaints[region] = self.complaints.get(region, 0) + 1


@dataclass
class _Cursor:
    """Where a run stands: its random state, its leaves, the events not yet emitted."""

    rng: np.random.Generator
    slices: Any
    heap: list[tuple[float, int, dict[str, Any]]]
    t: float
    series: _Series | None = None


@lru_cache(maxsize=4)
def _user_pmf(users: int, zipf_a: float = 1.3) -> np.ndarray:
    """P(user k) for ``zipf(a) % users``: exact up to 200 laps, the tail spread evenly."""
    x = np.arange(1, users * 200 + 1, dtype=float)
    p = x**-zipf_a / float(zeta(zipf_a))
    pmf: np.ndarray = np.bincount(x.astype(np.int64) % users, weights=p, minlength=users)
    out: np.ndarray = pmf + (1.0 - float(pmf.sum())) / users
    return out


class Resumable:
    """Minute by minute generation into a time-ordered heap, which can stop at a
    checkpoint and resume from it with other incidents (those start after it)."""

    start: datetime
    duration: timedelta
    seed: int
    incidents: Sequence[Incident]
    _seq: int
    _cursor: _Cursor | None

    def events(self) -> Iterator[dict[str, Any]]:
        self._cursor = self._begin()
        yield from self._advance(self._end)
        yield from self._drain()

    def events_until(self, at: datetime) -> Iterator[dict[str, Any]]:
        """The events before ``at`` (a whole minute after ``start``); then ``checkpoint()``
        holds what ``resume`` needs to go on exactly as ``events()`` would."""
        self._cursor = self._begin()
        yield from self._advance(at.timestamp())

    def checkpoint(self) -> bytes:
        cur = self._cursor
        assert cur is not None, "events_until() first"
        return pickle.dumps((cur.rng, cur.slices, cur.heap, cur.t, cur.series, self._seq))

    def resume(self, checkpoint: bytes) -> Iterator[dict[str, Any]]:
        """The events from a checkpoint to the end, with this generator's incidents
        (which must all start after it)."""
        rng, slices, heap, t, series, seq = pickle.loads(checkpoint)
        assert all(inc.start.timestamp() >= t for inc in self.incidents)
        self._cursor = _Cursor(rng, slices, heap, t, series)
        self._seq = seq
        yield from self._advance(self._end)
        yield from self._drain()

    @property
    def _end(self) -> float:
        return (self.start + self.duration).timestamp()

    def _begin(self) -> _Cursor:
        raise NotImplementedError

    def _minute(self, cur: _Cursor, t: float) -> None:
        """Push the events of the sessions starting in [t, t + 60 s) onto the heap."""
        raise NotImplementedError

    def _push(self, heap: list[tuple[float, int, dict[str, Any]]], ev: dict[str, Any]) -> None:
        heapq.heappush(heap, (ev["_t"], self._next(), ev))

    def _advance(self, until: float) -> Iterator[dict[str, Any]]:
        cur = self._cursor
        assert cur is not None
        heap = cur.heap
        while cur.t < min(until, self._end):
            self._minute(cur, cur.t)
            cur.t = t = cur.t + 60.0
            while heap and heap[0][0] < t:
                yield self._emit(heapq.heappop(heap)[2])

    def _drain(self) -> Iterator[dict[str, Any]]:
        assert self._cursor is not None
        heap = self._cursor.heap
        while heap:
            ev = heapq.heappop(heap)[2]
            if ev["_t"] < self._end:
                yield self._emit(ev)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def _emit(ev: dict[str, Any]) -> dict[str, Any]:
        ev["ts"] = _iso(ev.pop("_t"))
        return ev

    def _effects(self, leaf: tuple[str, str, str], t: float) -> dict[str, float]:
        """What the incidents covering a leaf slice at time t change: multipliers and shares."""
        eff = dict(_NO_EFFECT)
        for inc in self.incidents:
            if not inc.covers(leaf, t):
                continue
            m = inc.strength(t)
            if inc.family == "conversion":
                eff["pay"] *= 1.0 - m
            elif inc.family == "orders":
                eff["checkout"] *= 1.0 - m
            elif inc.family == "churn":
                eff["traffic"] *= 1.0 - m / 2
                eff["churn"] *= 1.0 + 20.0 * m
            elif inc.family == "feedback":
                eff["bad_feedback"] = max(eff["bad_feedback"], m)
            elif inc.family == "cancel":
                eff["cancel"] *= 1.0 + 10.0 * m
            elif inc.family == "complaint":
                eff["complaint"] = max(eff["complaint"], m)
            elif inc.family == "traffic":
                eff["traffic"] *= max(0.0, 1.0 + m)
            elif inc.family == "returning":  # a share of the usual visitors is new instead
                eff["new_user"] = max(eff["new_user"], m)
            elif inc.family == "campaign":  # extra visitors, each coming once
                eff["one_off"] += m
        return eff

    def _minutes(self, start: float, end: float) -> Iterator[float]:
        """The minute steps of the run that start in [start, end)."""
        t0 = self.start.timestamp()
        first = max(0, math.ceil((start - t0) / 60))
        for minute in range(first, math.ceil((end - t0) / 60)):
            yield t0 + 60.0 * minute


@dataclass
class Simulator(Resumable):
    start: datetime
    duration: timedelta
    seed: int = 42
    sessions_per_minute: float = 200.0
    incidents: Sequence[Incident] = ()
    users_per_leaf: int = 4000
    series: bool = False  # each region's metric series too: stock, delivery time, queue
    _seq: int = field(default=0, init=False)
    _cursor: _Cursor | None = field(default=None, init=False, repr=False)

    def _begin(self) -> _Cursor:
        rng = np.random.default_rng(self.seed)
        self._seq = 0
        slices = leaves(rng)
        t = self.start.timestamp()
        series = (
            _Series.start(self.seed, slices, self.sessions_per_minute, t) if self.series else None
        )
        return _Cursor(rng, slices, [], t, series)

    def _minute(self, cur: _Cursor, t: float) -> None:
        rng, step, series = cur.rng, 60.0, cur.series
        season = seasonality(t)

        def push(session: list[dict[str, Any]]) -> None:
            for ev in session:
                self._push(cur.heap, ev)
                if series is not None:
                    series.tally(ev)

        for idx, leaf in enumerate(cur.slices):
            effects = self._effects(leaf.key, t)
            rate = self.sessions_per_minute * leaf.weight * season * effects["traffic"]
            for _ in range(int(rng.poisson(rate))):
                push(self._session(rng, idx, leaf, t + rng.uniform(0, step), effects))
            if effects["one_off"] > 0:  # visitors who come once and never again
                for _ in range(int(rng.poisson(rate * effects["one_off"]))):
                    at = t + rng.uniform(0, step)
                    push(self._session(rng, idx, leaf, at, {**effects, "new_user": 1.0}))
        if series is not None:
            self._readings(cur.heap, series, t)

    def _readings(
        self, heap: list[tuple[float, int, dict[str, Any]]], s: _Series, t: float
    ) -> None:
        """The minute's metric events of every region from the minute's tallies: its
        delivery time (when something was delivered) and, every few minutes, the
        levels of its stock and its support queue."""
        rng, season = s.rng, seasonality(t)
        level_due = _holds(t, SERIES_EVERY)
        for region, share in REGIONS:
            left, slower = self._series_effects(region, t)
            if _holds(t, 86400, RESTOCK_AT):
                s.stock[region] = s.capacity[region]
            s.stock[region] = max(0.0, s.stock[region] - s.sold.get(region, 0.0))
            inflow = self.sessions_per_minute * share * season * TICKETS_PER_SESSION
            s.queue[region] = (
                int(rng.binomial(s.queue[region], QUEUE_KEEP))
                + s.complaints.get(region, 0)
                + int(rng.poisson(inflow))
            )
            if n := s.paid.get(region, 0):  # the mean of n deliveries' times
                mean = DELIVERY_MINUTES[region] * (0.85 + 0.3 * season) * slower
                shape = n / DELIVERY_SPREAD**2
                minutes = float(rng.gamma(shape, mean / shape))
                self._reading(heap, s, t + rng.uniform(0, 60), region, "delivery_minutes", minutes)
            if level_due:
                at = t + rng.uniform(0, 5)
                self._reading(
                    heap, s, at, region, "inventory_units", math.floor(s.stock[region] * left)
                )
                self._reading(heap, s, at, region, "support_queue", s.queue[region])
        s.sold.clear()
        s.paid.clear()
        s.complaints.clear()

    def _reading(
        self,
        heap: list[tuple[float, int, dict[str, Any]]],
        s: _Series,
        at: float,
        region: str,
        name: str,
        value: float,
    ) -> None:
        s.seq += 1
        ev = {
            "type": "metric",
            "event_id": f"m-{self.seed}-{s.seq}",
            "_t": at,
            "name": name,
            "value": round(float(value), 2),
            "unit": SERIES_UNITS[name],
            "region": region,
        }
        # a tie-breaker of their own, below the traffic's: its event ids stay as they are
        heapq.heappush(heap, (at, -s.seq, ev))

    def _series_effects(self, region: str, t: float) -> tuple[float, float]:
        """What the incidents covering a region at time t do to its series: the share
        of its stock still there and the factor on its delivery time."""
        left = slower = 1.0
        for inc in self.incidents:
            if inc.family not in SERIES_FAMILIES or not inc.covers((region, "", ""), t):
                continue
            m = inc.strength(t)
            if inc.family == "stockout":
                left *= max(0.0, 1.0 - m)
            else:
                slower *= max(0.1, 1.0 + m)
        return left, slower

    def shares(self) -> dict[tuple[str, str, str], float]:
        """Each leaf slice's share of the traffic."""
        return {leaf.key: leaf.weight for leaf in leaves(np.random.default_rng(self.seed))}

    def expected(
        self, slice_: Mapping[str, str], start: float, end: float, incidents: bool = True
    ) -> dict[str, float]:
        """Expected counts in ``slice_`` over [start, end) from the true parameters, with
        this simulator's incidents or (``incidents=False``) without them: sessions,
        checkouts, paid, failed, cancelled, churn, feedback, negative (ratings of 1-2),
        complaints and users (distinct users: each leaf's own, drawn by Zipf)."""
        out = dict.fromkeys(QUANTITIES, 0.0)
        want = dict(slice_)
        pmf = _user_pmf(self.users_per_leaf)
        for leaf in leaves(np.random.default_rng(self.seed)):
            if any(want.get(d, v) != v for d, v in zip(DIMS, leaf.key, strict=True)):
                continue
            returning = fresh = 0.0
            for t in self._minutes(start, end):
                eff = self._effects(leaf.key, t) if incidents else _NO_EFFECT
                rate = self.sessions_per_minute * leaf.weight * seasonality(t) * eff["traffic"]
                sessions = rate * (1.0 + eff["one_off"])
                fresh += rate * eff["one_off"] + rate * eff["new_user"]
                returning += rate * (1.0 - eff["new_user"])
                checkouts = sessions * min(1.0, leaf.checkout_p * eff["checkout"])
                paid = checkouts * min(1.0, leaf.pay_p * eff["pay"])
                feedback = sessions * (0.05 + 0.1 * eff["complaint"])
                bad = min(1.0, 0.12 + 0.7 * eff["bad_feedback"])
                for key, value in (
                    ("sessions", sessions),
                    ("checkouts", checkouts),
                    ("paid", paid),
                    ("failed", checkouts - paid),
                    ("cancelled", paid * min(1.0, 0.03 * eff["cancel"])),
                    ("churn", sessions * min(1.0, 0.002 * eff["churn"])),
                    ("feedback", feedback),
                    ("negative", feedback * bad),
                    ("complaints", feedback * (1 - (1 - 0.5 * bad) * (1 - eff["complaint"]))),
                ):
                    out[key] += value
            out["users"] += float(np.sum(1.0 - np.exp(-returning * pmf))) + fresh
        return out

    def _session(
        self,
        rng: np.random.Generator,
        idx: int,
        leaf: Leaf,
        t: float,
        eff: Mapping[str, float],
    ) -> list[dict[str, Any]]:
        user = f"u-{idx}-{int(rng.zipf(1.3)) % self.users_per_leaf}"
        if eff["new_user"] > 0 and rng.random() < eff["new_user"]:
            user = f"n-{idx}-{self._next()}"
        sid = f"s-{self._next()}"
        base = {
            "user_id": user,
            "region": leaf.region,
            "channel": leaf.channel,
            "platform": leaf.platform,
        }
        out = []

        def add(kind: str, at: float, **fields: Any) -> None:
            ev = {"type": kind, "event_id": f"{kind[0]}-{self.seed}-{self._next()}", "_t": at}
            ev.update(base)
            ev.update(fields)
            out.append(ev)

        add("activity", t, session_id=sid, action="session_start")
        at = t
        for _ in range(int(rng.integers(1, 4))):
            at += rng.exponential(20)
            add("activity", at, session_id=sid, action="page_view")
        if rng.random() < 0.002 * eff["churn"]:
            add("activity", at + 5, session_id=sid, action="subscription_cancel")
        if rng.random() < leaf.checkout_p * eff["checkout"]:
            at += rng.exponential(30)
            add("activity", at, session_id=sid, action="add_to_cart")
            at += rng.exponential(30)
            add("activity", at, session_id=sid, action="checkout_start")
            order = f"o-{self._next()}"
            amount = round(float(rng.lognormal(3.8, 0.6)), 2)
            add("order", at + 1, order_id=order, status="created", amount=amount, currency="USD")
            paid = rng.random() < leaf.pay_p * eff["pay"]
            status = "paid" if paid else "payment_failed"
            at += rng.exponential(5) + 1
            add("order", at, order_id=order, status=status, amount=amount, currency="USD")
            if paid and rng.random() < 0.03 * eff["cancel"]:
                add(
                    "order",
                    at + rng.uniform(30, 240),
                    order_id=order,
                    status="cancelled",
                    amount=amount,
                    currency="USD",
                )
        if rng.random() < 0.05 + 0.1 * eff["complaint"]:
            bad = rng.random() < 0.12 + 0.7 * eff["bad_feedback"]
            rating = int(rng.integers(1, 3)) if bad else int(rng.integers(3, 6))
            extra: dict[str, Any] = {"rating": rating}
            complains = eff["complaint"] > 0 and rng.random() < eff["complaint"]
            if (bad and rng.random() < 0.5) or complains:
                extra["category"] = "complaint"
            add("feedback", at + rng.uniform(5, 60), **extra)
        return out


def ground_truth(incidents: Sequence[Incident]) -> list[dict[str, Any]]:
    return [
        {
            "family": inc.family,
            "slice": dict(inc.slice),
            "start": inc.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "end": (inc.start + inc.duration).astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "magnitude": inc.magnitude,
        }
        for inc in incidents
    ]
