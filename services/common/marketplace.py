"""A second event generator, built unlike the simulator, for judging the detector on
habits it was not made beside.

A marketplace in four countries with their own clocks: 48 leaf slices (country x
acquisition channel x platform) whose weights are drawn once, unequal and not a
product of per-dimension shares; a day with a lunch and an evening peak in local
time and busier weekends; users drawn evenly from a pool per country, shared by
its channels and platforms; a funnel of product views, cart, checkout, order and
a payment that is retried once in four of its failures; refunds and cancellations
minutes later; ratings left by a quarter of buyers 10 to 40 minutes after paying,
and questions and bug reports from a few sessions that bought nothing.

It takes the simulator's incidents (same families, slices named by its own
dimension values) and writes the same event schema, so the engine, replay and
the evaluation run on it unchanged. ``expected`` gives its true rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from .simulator import _NO_EFFECT, DIMS, QUANTITIES, Incident, Resumable, _Cursor

COUNTRIES = (("us", -5.0), ("br", -3.0), ("de", 1.0), ("in", 5.5))  # and their UTC offsets
CHANNELS = ("organic", "ads", "social", "referral")
PLATFORMS = ("web", "ios", "android")
STRUCTURE_SEED = 2027  # the leaves' weights and rates: fixed, whatever the run's seed
USERS_PER_COUNTRY = 6000
RETRY = 0.25  # share of failed payments tried again
REFUND, CANCEL = 0.02, 0.01  # of paid orders
RATE_SHARE = 0.25  # buyers who rate
BAD = 0.06  # ratings of 1-2 among buyers' ratings
COMPLAINT_OF_BAD = 0.6
ASK = 0.01  # sessions without an order that ask a question or report a bug
CHURN = (0.001, 0.0005)  # subscription_cancel, account_close per session


@dataclass(frozen=True)
class Leaf:
    country: str
    channel: str
    platform: str
    weight: float
    cart_p: float
    pay_p: float
    offset_h: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.country, self.channel, self.platform)


def market_leaves() -> list[Leaf]:
    rng = np.random.default_rng(STRUCTURE_SEED)
    raw = rng.lognormal(0.0, 1.1, len(COUNTRIES) * len(CHANNELS) * len(PLATFORMS))
    weights = raw / raw.sum()
    out = []
    i = 0
    for country, offset in COUNTRIES:
        for channel in CHANNELS:
            for platform in PLATFORMS:
                cart = float(np.clip(rng.normal(0.16, 0.04), 0.06, 0.3))
                pay = float(np.clip(rng.normal(0.93, 0.02), 0.85, 0.99))
                out.append(Leaf(country, channel, platform, float(weights[i]), cart, pay, offset))
                i += 1
    return out


def daily(t: float, offset_h: float) -> float:
    """Local lunch (12:30) and evening (21:00) peaks, a night trough, busier weekends."""
    local = t + offset_h * 3600
    hour = (local % 86400) / 3600

    def bump(at: float, width: float) -> float:
        d = min(abs(hour - at), 24 - abs(hour - at))
        return math.exp(-0.5 * (d / width) ** 2)

    weekday = int(local // 86400 + 3) % 7
    return (0.06 + 0.55 * bump(12.5, 2.0) + 0.9 * bump(21.0, 2.5)) * (1.2 if weekday >= 5 else 1.0)


@dataclass
class Marketplace(Resumable):
    start: datetime
    duration: timedelta
    seed: int = 42
    sessions_per_minute: float = 200.0  # all-up, at the busiest hour of a weekday, roughly
    incidents: Sequence[Incident] = ()
    _seq: int = field(default=0, init=False)
    _cursor: _Cursor | None = field(default=None, init=False, repr=False)

    def _begin(self) -> _Cursor:
        self._seq = 0
        return _Cursor(
            np.random.default_rng(self.seed), market_leaves(), [], self.start.timestamp()
        )

    def shares(self) -> dict[tuple[str, str, str], float]:
        return {leaf.key: leaf.weight for leaf in market_leaves()}

    def _rate(self, leaf: Leaf, t: float, eff: Mapping[str, float]) -> float:
        return (
            self.sessions_per_minute * 1.6 * leaf.weight * daily(t, leaf.offset_h) * eff["traffic"]
        )

    def _minute(self, cur: _Cursor, t: float) -> None:
        rng = cur.rng
        for leaf in cur.slices:
            eff = self._effects(leaf.key, t)
            rate = self._rate(leaf, t, eff) * (1.0 + eff["one_off"])
            for _ in range(int(rng.poisson(rate))):
                fresh = rng.random() < (eff["new_user"] + eff["one_off"]) / (1.0 + eff["one_off"])
                for ev in self._session(rng, leaf, t + rng.uniform(0, 60.0), eff, fresh):
                    self._push(cur.heap, ev)

    def _session(
        self, rng: np.random.Generator, leaf: Leaf, t: float, eff: Mapping[str, float], fresh: bool
    ) -> list[dict[str, Any]]:
        country = leaf.country
        user = (
            f"{country}:new:{self._next()}"
            if fresh
            else f"{country}:{int(rng.integers(USERS_PER_COUNTRY))}"
        )
        sid = f"{country}-sess-{self._next()}"
        base = {
            "user_id": user,
            "region": country,
            "channel": leaf.channel,
            "platform": leaf.platform,
        }
        out: list[dict[str, Any]] = []

        def add(kind: str, at: float, **fields: Any) -> None:
            out.append(
                {
                    "type": kind,
                    "event_id": f"mk-{self.seed}-{self._next()}",
                    "_t": at,
                    **base,
                    **fields,
                }
            )

        add("activity", t, session_id=sid, action="session_start")
        at = t
        for _ in range(int(rng.integers(1, 4))):
            at += rng.exponential(60)
            add("activity", at, session_id=sid, action="page_view")
        for action, p in zip(("subscription_cancel", "account_close"), CHURN, strict=True):
            if rng.random() < min(1.0, p * eff["churn"]):
                add("activity", at + 3, session_id=sid, action=action)
        ordered = rng.random() < min(1.0, leaf.cart_p * eff["checkout"])
        if ordered:  # carts all reach checkout here; the funnel's drop is before the cart
            at += rng.exponential(60)
            add("activity", at, session_id=sid, action="add_to_cart")
            at += rng.exponential(45)
            add("activity", at, session_id=sid, action="checkout_start")
            order = f"{country}-ord-{self._next()}"
            amount = round(float(rng.gamma(2.0, 35.0)), 2)
            money = {"order_id": order, "amount": amount, "currency": "EUR"}
            add("order", at + 2, status="created", **money)
            pay = min(1.0, leaf.pay_p * eff["pay"])
            paid = rng.random() < pay
            at += 3 + rng.exponential(4)
            if not paid:
                add("order", at, status="payment_failed", **money)
                if rng.random() < RETRY:
                    paid = rng.random() < pay
                    at += 20 + rng.exponential(20)
                    add("order", at, status="paid" if paid else "payment_failed", **money)
            else:
                add("order", at, status="paid", **money)
            if paid:
                r = rng.random()
                undo = min(1.0, (REFUND + CANCEL) * eff["cancel"])
                if r < undo:
                    status = "refunded" if r < undo * REFUND / (REFUND + CANCEL) else "cancelled"
                    add("order", at + rng.uniform(120, 600), status=status, **money)
                if rng.random() < RATE_SHARE + eff["complaint"] * 0.5:
                    bad = rng.random() < min(1.0, BAD + 0.8 * eff["bad_feedback"])
                    rating = (
                        int(rng.choice((1, 2), p=(0.7, 0.3)))
                        if bad
                        else int(rng.choice((3, 4, 5), p=(0.1, 0.3, 0.6)))
                    )
                    complains = (bad and rng.random() < COMPLAINT_OF_BAD) or rng.random() < eff[
                        "complaint"
                    ]
                    extra = (
                        {"category": "complaint"}
                        if complains
                        else {"category": "praise"}
                        if rating == 5
                        else {}
                    )
                    add("feedback", at + rng.uniform(600, 2400), rating=rating, **extra)
        elif rng.random() < ASK + eff["complaint"] * 0.05:
            complains = rng.random() < eff["complaint"]
            category = "complaint" if complains else str(rng.choice(("question", "bug")))
            rating = 1 if complains else int(rng.integers(3, 5))
            add("feedback", at + rng.uniform(30, 300), rating=rating, category=category)
        return out

    def expected(
        self, slice_: Mapping[str, str], start: float, end: float, incidents: bool = True
    ) -> dict[str, float]:
        """Expected counts in ``slice_`` over [start, end), as ``Simulator.expected``."""
        out = dict.fromkeys(QUANTITIES, 0.0)
        want = dict(slice_)
        returning: dict[str, float] = {}
        for leaf in market_leaves():
            if any(want.get(d, v) != v for d, v in zip(DIMS, leaf.key, strict=True)):
                continue
            for t in self._minutes(start, end):
                eff = self._effects(leaf.key, t) if incidents else _NO_EFFECT
                rate = self._rate(leaf, t, eff)
                sessions = rate * (1.0 + eff["one_off"])
                fresh = rate * (eff["new_user"] + eff["one_off"])
                returning[leaf.country] = returning.get(leaf.country, 0.0) + sessions - fresh
                out["users"] += fresh
                cart = min(1.0, leaf.cart_p * eff["checkout"])
                pay = min(1.0, leaf.pay_p * eff["pay"])
                orders = sessions * cart
                paid = orders * (pay + (1 - pay) * RETRY * pay)
                failed = orders * ((1 - pay) + (1 - pay) * RETRY * (1 - pay))
                rated = paid * min(1.0, RATE_SHARE + eff["complaint"] * 0.5)
                asked = sessions * (1 - cart) * min(1.0, ASK + eff["complaint"] * 0.05)
                bad = min(1.0, BAD + 0.8 * eff["bad_feedback"])
                c = eff["complaint"]
                rated_complaints = rated * (1 - (1 - bad * COMPLAINT_OF_BAD) * (1 - c))
                undo = min(1.0, (REFUND + CANCEL) * eff["cancel"])
                for key, value in (
                    ("sessions", sessions),
                    ("checkouts", orders),
                    ("paid", paid),
                    ("failed", failed),
                    ("cancelled", paid * undo),
                    ("churn", sessions * sum(min(1.0, p * eff["churn"]) for p in CHURN)),
                    ("feedback", rated + asked),
                    ("negative", rated * bad + asked * c),
                    ("complaints", rated_complaints + asked * c),
                ):
                    out[key] += value
        for country_sessions in returning.values():
            out["users"] += USERS_PER_COUNTRY * (
                1 - math.exp(-country_sessions / USERS_PER_COUNTRY)
            )
        return out
