"""A fixed suite of incident scenarios through the engine, scored like an on-call would.

Each scenario simulates two days of traffic for the baselines to learn from and
a third day with one incident from 13:00 to 15:00 UTC (or none, for the clean
runs), replays it through the engine exactly as ``opswatch replay`` does, and
compares the alerts with the ground truth:

- detected: an alert on one of the metrics the incident should move, on a slice
  compatible with the incident's (no dimension set to another value), started
  between the incident's start and its end;
- delay: windows from the incident's start to that alert's start;
- false alerts: alerts not compatible in slice and time with an incident
  (from its start to an hour after its end).

Only alerts started on the third day are judged (the first two are for
learning). Precision is the share of them that are not false; false alerts of
the clean runs are also given per day per 1,000 monitored slices.
The suite is fixed: it is not tuned to the detector, and scenarios whose
metric the catalog does not have yet count as missed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

from services.common.events import event_time, leaf_of
from services.common.simulator import Family, Incident, Simulator
from services.detector.engine.calendar import Calendar, EntrySpec
from services.detector.engine.catalog import Catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings
from services.detector.engine.explain import iso

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
INCIDENT_AT = START + timedelta(days=2, hours=13)
INCIDENT_FOR = timedelta(hours=2)
SPAN = timedelta(days=2, hours=20)
JUDGED_DAYS = SPAN.total_seconds() / 86400 - 2  # what follows the two days of learning

CONVERSION = ("conversion_rate", "checkout_conversion", "payment_failure_rate")
FEEDBACK = ("avg_rating", "negative_feedback_rate", "complaint_rate")


@dataclass(frozen=True)
class Scenario:
    name: str
    family: Family | None = None
    slice: dict[str, str] = field(default_factory=dict)
    magnitude: float = 0.0
    metrics: tuple[str, ...] = ()
    step: bool = True  # a step change (counts towards the median delay)
    duration: timedelta = INCIDENT_FOR  # of what the metrics should show, from INCIDENT_AT
    lead: timedelta = timedelta(0)  # how long before INCIDENT_AT its cause happens
    ramp: bool = False

    def incident(self) -> Incident | None:
        if self.family is None:
            return None
        return Incident(
            family=self.family,
            slice=self.slice,
            start=INCIDENT_AT - self.lead,
            duration=self.duration,
            magnitude=self.magnitude,
            ramp=self.ramp,
        )


SUITE: tuple[Scenario, ...] = (
    Scenario(
        "conversion drop, small slice",
        "conversion",
        {"region": "latam", "channel": "app"},
        0.8,
        CONVERSION,
    ),
    Scenario(
        "conversion drop, large slice",
        "conversion",
        {"region": "na", "channel": "web"},
        0.4,
        CONVERSION,
    ),
    Scenario("conversion drop, all-up", "conversion", {}, 0.3, CONVERSION),
    Scenario(
        "payment failure spike", "conversion", {"region": "eu"}, 0.6, ("payment_failure_rate",)
    ),
    Scenario("cancel spike", "cancel", {"region": "na"}, 0.8, ("cancel_rate",)),
    Scenario("GMV drop", "orders", {"channel": "web"}, 0.5, ("gmv", "order_count", *CONVERSION)),
    Scenario("active-user drop", "traffic", {"region": "eu"}, -0.5, ("active_users",)),
    Scenario("churn-action spike", "churn", {"region": "apac"}, 0.5, ("churn_actions",)),
    Scenario("rating drop", "feedback", {"channel": "app"}, 0.6, FEEDBACK),
    Scenario("complaint spike", "complaint", {"region": "na"}, 0.5, ("complaint_rate",)),
    Scenario(
        "channel goes silent",
        "traffic",
        {"channel": "email"},
        -1.0,
        ("active_users", "order_count"),
    ),
    Scenario(
        "slow returning-rate drift",
        "returning",
        {},
        0.15,
        ("returning_user_rate",),
        step=False,
        duration=START + SPAN - INCIDENT_AT,
        ramp=True,
    ),
    # one-time visitors of a campaign the day before lapse a day later (the
    # catalog's lapse horizon)
    Scenario(
        "lapsed-user spike",
        "campaign",
        {"region": "eu"},
        0.5,
        ("lapsed_users",),
        lead=timedelta(days=1),
    ),
)
CLEAN: tuple[Scenario, ...] = (
    Scenario("clean"),
    Scenario("holiday surge (no ratio alert)", "traffic", {}, 1.5, ()),
)
RATIOS = (*CONVERSION, "cancel_rate", "negative_feedback_rate", "complaint_rate")


@dataclass
class Outcome:
    scenario: str
    detected: bool | None  # None for clean runs
    delay_windows: float | None
    alerts: int
    false_alerts: int
    note: str = ""


def compatible(alert_slice: dict[str, str], incident_slice: dict[str, str]) -> bool:
    return all(alert_slice.get(k, v) == v for k, v in incident_slice.items())


def scenario_updates(
    scenario: Scenario, catalog: Catalog, settings: EngineSettings, rate: float, seed: int
) -> tuple[list[dict[str, Any]], int]:
    """Every alert update the engine gives on the scenario's traffic, in order, and the
    number of slices it tracked."""
    incident = scenario.incident()
    run = traffic_updates([incident] if incident else [], SPAN, catalog, settings, rate, seed)
    return run.updates, run.slices


def traffic_updates(
    incidents: list[Incident],
    span: timedelta,
    catalog: Catalog,
    settings: EngineSettings,
    rate: float,
    seed: int,
    calendar: Calendar | None = None,
) -> Run:
    """Every alert update the engine gives on simulated traffic from ``START`` with
    ``incidents`` (and a ``calendar``), in order, the number of slices it tracked and
    the observed effects of the calendar entries that ended."""
    sim = Simulator(START, span, seed=seed, sessions_per_minute=rate, incidents=incidents)
    engine = Engine(catalog, settings, calendar)
    updates: list[dict[str, Any]] = []
    for event in sim.events():
        engine.add(event, event_time(event), leaf_of(event))
        updates += engine.poll()
    updates += engine.flush()
    return Run(updates, len(engine.evaluator.slices), engine.effects())


@dataclass(frozen=True)
class Run:
    updates: list[dict[str, Any]]
    slices: int
    effects: list[dict[str, Any]]


# A two-day sale after the two days of learning: all-up traffic doubles, and with it
# the users, orders, order value, churn actions and the users who lapse a day later
SALE_AT = START + timedelta(days=2)
SALE_FOR = timedelta(days=2)
SALE_EXPECT = {
    "active_users": 2.0,
    "order_count": 2.0,
    "gmv": 2.0,
    "churn_actions": 2.0,
    "lapsed_users": 2.0,
}


def sale(magnitude: float = 1.0) -> Incident:
    """The sale as traffic: ``magnitude`` more sessions everywhere (1.0: twice as many)."""
    return Incident(
        family="traffic", start=SALE_AT, duration=SALE_FOR, magnitude=magnitude, slice={}
    )


def sale_entry(effect: str = "expect", factors: dict[str, float] | None = None) -> EntrySpec:
    """The sale's calendar entry, all-up; ``expect`` with ``SALE_EXPECT`` by default."""
    return EntrySpec.model_validate(
        {
            "name": "Spring sale",
            "start": SALE_AT,
            "end": SALE_AT + SALE_FOR,
            "slices": [{}],
            "effect": effect,
            "expect": (factors or SALE_EXPECT) if effect == "expect" else None,
        }
    )


def first_updates(updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first update of each alert, in the order they were raised."""
    first: dict[str, dict[str, Any]] = {}
    for alert in updates:
        first.setdefault(alert["id"], alert)
    return list(first.values())


def run_scenario(
    scenario: Scenario, catalog: Catalog, settings: EngineSettings, rate: float, seed: int
) -> tuple[Outcome, int]:
    incident = scenario.incident()
    updates, slices = scenario_updates(scenario, catalog, settings, rate, seed)
    judged_from = iso((START + timedelta(days=2)).timestamp())
    alerts = [a for a in first_updates(updates) if a["started_at"] >= judged_from]
    start = iso(INCIDENT_AT.timestamp())
    end = iso((INCIDENT_AT + scenario.duration).timestamp())
    grace = iso((INCIDENT_AT + scenario.duration + timedelta(hours=1)).timestamp())

    def related(a: dict[str, Any]) -> bool:
        return (
            incident is not None
            and compatible(a["slice"], scenario.slice)
            and start <= a["started_at"] <= grace
        )

    false = [a for a in alerts if not related(a)]
    note = ""
    if scenario.name.startswith("holiday"):
        ratio_alerts = [a for a in alerts if a["metric"] in RATIOS]
        note = f"{len(ratio_alerts)} ratio alerts"
    if incident is None and scenario.metrics:
        missing = [m for m in scenario.metrics if m not in catalog.names]
        return Outcome(
            scenario.name, False, None, len(alerts), len(false), f"no metric {', '.join(missing)}"
        ), slices
    if incident is None or not scenario.metrics:
        return Outcome(scenario.name, None, None, len(alerts), len(false), note), slices
    hits = sorted(
        (
            a
            for a in alerts
            if related(a) and a["metric"] in scenario.metrics and a["started_at"] < end
        ),
        key=lambda a: a["started_at"],
    )
    delay = None
    if hits:
        began = datetime.fromisoformat(hits[0]["started_at"].replace("Z", "+00:00"))
        delay = (began - INCIDENT_AT).total_seconds() / settings.window_s
        note = f"first: {hits[0]['metric']} {hits[0]['slice'] or 'all-up'}"
    return Outcome(scenario.name, bool(hits), delay, len(alerts), len(false), note), slices


@dataclass
class Summary:
    outcomes: list[Outcome]
    recall: float
    precision: float
    median_delay_windows: float | None
    false_alerts_per_day_per_1000_slices: float
    monitored_slices: int

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outcomes": [asdict(o) for o in self.outcomes]}


def run_suite(
    catalog: Catalog,
    settings: EngineSettings,
    rate: float = 60.0,
    seed: int = 42,
    progress: Callable[[Outcome], None] | None = None,
    jobs: int = 1,
) -> Summary:
    outcomes: list[Outcome] = []
    slices = 0
    suite = (*SUITE, *CLEAN)
    args = (suite, repeat(catalog), repeat(settings), repeat(rate), repeat(seed))
    with ExitStack() as stack:
        if jobs > 1:  # each scenario is independent: one process each
            pool = stack.enter_context(ProcessPoolExecutor(min(jobs, len(suite))))
            runs: Iterable[tuple[Outcome, int]] = pool.map(run_scenario, *args)
        else:
            runs = map(run_scenario, *args)
        for outcome, seen in runs:  # in the suite's order
            slices = max(slices, seen)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    judged = [o for o in outcomes if o.detected is not None]
    total_alerts = sum(o.alerts for o in outcomes)
    total_false = sum(o.false_alerts for o in outcomes)
    steps = {s.name for s in SUITE if s.step}
    delays = [
        o.delay_windows
        for o in judged
        if o.detected and o.scenario in steps and o.delay_windows is not None
    ]
    clean_false = sum(o.false_alerts for o in outcomes if o.detected is None)
    clean_runs = sum(1 for o in outcomes if o.detected is None)
    per_day = clean_false / (clean_runs * JUDGED_DAYS) / (max(slices, 1) / 1000)
    return Summary(
        outcomes,
        recall=sum(1 for o in judged if o.detected) / len(judged),
        precision=(total_alerts - total_false) / total_alerts if total_alerts else 1.0,
        median_delay_windows=statistics.median(delays) if delays else None,
        false_alerts_per_day_per_1000_slices=per_day,
        monitored_slices=slices,
    )
