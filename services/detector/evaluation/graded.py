"""A suite graded by evidence, on two generators and two traffic levels, beside a
textbook CUSUM.

For each generator (the simulator, and the marketplace, built differently) and
traffic level, one incident-free history of 7.5 days is simulated once and
replayed once through the engine and through the textbook CUSUM's windows; at
its end (day 8, 12:45 UTC) the engine's snapshot, the textbook's windows and the
generator's own state are kept. Each scenario resumes all three from there with
one incident at 13:00, so its data before the incident is exactly the history's.
The clean run goes on from the same point for a day, without incident.

Each scenario's evidence comes from the generator's true rates
(``evidence.py``); it is the largest over the metrics the scenario is judged
on. Both detectors are judged alike, as in ``scenarios.py``: detected when an
alert on one of those metrics, on a slice compatible with the incident's,
starts between the incident's start and its end; delay in windows from the
incident's start; false alerts are the others, except those started in the
last three windows of the data, which are counted apart as boundary alerts.
The engine runs as ``opswatch replay`` does (its end flushed); the textbook
judges closed windows only.

The textbook's threshold is the smallest (on a 0.1-nat grid) that raises, over
all clean runs together, no more false alerts per day per 100 monitored slices
than opswatch raised on the same runs (boundary alerts left out of both).
The suite is fixed; the affected slice of a scenario is the generator's slice
(all-up, one or two dimensions, or a leaf) whose traffic share is nearest the
scenario's, so the same scenario is about as large on both generators.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise, product
from typing import Any, Literal

import numpy as np
import orjson

from services.common.events import event_time, leaf_of
from services.common.marketplace import Marketplace
from services.common.simulator import Family, Incident, Simulator
from services.detector.engine.aggregate import Aggregator
from services.detector.engine.catalog import Catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings
from services.detector.engine.slices import ancestors, parse_slice_key, slice_key
from services.detector.evaluation.evidence import evidence, window_llr
from services.detector.evaluation.scenarios import compatible
from services.detector.evaluation.textbook import Textbook, calibrate, episodes

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
JUDGED_FROM = START + timedelta(days=7)  # the textbook's first window with 7 days behind it
FORK = START + timedelta(days=7, hours=12, minutes=45)  # where the shared history ends
INCIDENT_AT = FORK + timedelta(minutes=15)
CLEAN_END = FORK + timedelta(days=1)
GRACE = timedelta(hours=1)  # alerts this long after the incident are not false
AFTER = timedelta(hours=2)  # data after the incident's end
BOUNDARY_WINDOWS = 3
LEVELS = (60.0, 200.0)  # sessions per minute at peak: about 45,000 and 150,000 a day
BANDS = (0.0, 5.0, 10.0, 20.0, 50.0, 100.0, math.inf)
TARGET_NATS = 20.0

Kind = Literal["ratio", "count", "sum", "users"]
Shape = Literal["stop", "drop", "spike", "creep"]
Generator = Simulator | Marketplace
GENERATORS = ("simulator", "marketplace")

CONVERSION = ("conversion_rate", "checkout_conversion", "payment_failure_rate")


@dataclass(frozen=True)
class Graded:
    kind: Kind
    shape: Shape
    family: Family
    magnitude: float
    share: float  # of all traffic, in the affected slice
    metrics: tuple[str, ...]
    hours: float = 2.0
    watched: bool = True  # False: the catalog does not alert on this direction

    @property
    def name(self) -> str:
        size = (
            f"{self.magnitude:+g}"
            if self.family in ("traffic", "orders")
            else f"{self.magnitude:g}"
        )
        return f"{self.kind} {self.shape} {self.family} {size} at {self.share:.1%}"

    @property
    def duration(self) -> timedelta:
        return timedelta(hours=self.hours)

    def incident(self, slice_: Mapping[str, str]) -> Incident:
        return Incident.model_validate(
            {
                "family": self.family,
                "slice": dict(slice_),
                "start": INCIDENT_AT,
                "duration": self.duration,
                "magnitude": self.magnitude,
                "ramp": self.shape == "creep",
            }
        )


def _g(
    kind: Kind,
    shape: Shape,
    family: Family,
    m: float,
    shares: Iterable[float],
    metrics: tuple[str, ...],
    hours: float = 2.0,
    watched: bool = True,
) -> list[Graded]:
    return [Graded(kind, shape, family, m, s, metrics, hours, watched) for s in shares]


SUITE: tuple[Graded, ...] = (
    *_g("ratio", "stop", "conversion", 1.0, (0.005, 0.02), CONVERSION, hours=1.0),
    *_g("ratio", "drop", "conversion", 0.3, (0.03, 0.1), CONVERSION),
    *_g("ratio", "spike", "conversion", 0.25, (0.1,), ("payment_failure_rate",)),
    *_g("ratio", "spike", "feedback", 0.25, (0.1, 0.4), ("negative_feedback_rate",), hours=3.0),
    *_g("ratio", "spike", "complaint", 0.2, (0.1,), ("complaint_rate",)),
    *_g("ratio", "creep", "conversion", 0.5, (0.05,), CONVERSION, hours=4.0),
    *_g("ratio", "creep", "feedback", 0.4, (0.3,), ("negative_feedback_rate",), hours=4.0),
    *_g("count", "stop", "orders", 1.0, (0.01, 0.035), ("order_count",), hours=1.0),
    *_g("count", "drop", "orders", 0.4, (0.05, 0.2), ("order_count",)),
    *_g("count", "spike", "orders", -1.0, (0.02, 0.08), ("order_count",)),
    *_g("count", "spike", "churn", 0.3, (0.3,), ("churn_actions",)),
    *_g("count", "creep", "orders", 0.6, (0.1,), ("order_count",), hours=4.0),
    *_g("sum", "stop", "orders", 1.0, (0.02,), ("gmv",), hours=1.0),
    *_g("sum", "drop", "orders", 0.5, (0.1,), ("gmv",)),
    *_g("sum", "spike", "orders", -0.8, (0.05,), ("gmv",)),
    *_g("sum", "creep", "orders", 0.6, (0.15,), ("gmv",), hours=4.0),
    *_g("users", "stop", "traffic", -1.0, (0.002, 0.005), ("active_users",), hours=1.0),
    *_g("users", "drop", "traffic", -0.2, (0.02, 0.1), ("active_users",)),
    *_g("users", "spike", "traffic", 0.3, (0.03,), ("active_users",), watched=False),
    *_g("users", "creep", "traffic", -0.3, (0.05,), ("active_users",), hours=4.0),
)
QUICK: tuple[Graded, ...] = tuple(  # one of each kind, clear ones (tens of nats)
    s
    for s in SUITE
    if (s.kind, s.shape, s.share)
    in {
        ("ratio", "spike", 0.4),
        ("count", "stop", 0.035),
        ("sum", "drop", 0.1),
        ("users", "drop", 0.1),
    }
)


def generator(
    name: str, level: float, seed: int, end: datetime, incidents: Sequence[Incident] = ()
) -> Generator:
    kind = Simulator if name == "simulator" else Marketplace
    return kind(START, end - START, seed=seed, sessions_per_minute=level, incidents=incidents)


def slice_shares(gen: Generator) -> dict[str, float]:
    out: dict[str, float] = {}
    for leaf, weight in gen.shares().items():
        for key in ancestors(leaf):
            out[key] = out.get(key, 0.0) + weight
    return out


def slice_for(shares: Mapping[str, float], share: float) -> dict[str, str]:
    key = min(sorted(shares), key=lambda k: abs(math.log(shares[k] / share)))
    return parse_slice_key(key)


@dataclass
class Verdict:
    detected: bool
    delay_windows: float | None
    false_alerts: int
    boundary_alerts: int
    first: str = ""


@dataclass
class Row:
    generator: str
    level: float
    scenario: str
    kind: str
    shape: str
    slice: dict[str, str]
    share: float
    evidence_nats: float
    evidence_metric: str
    duration_windows: float
    watched: bool
    opswatch: Verdict
    textbook: Verdict
    oracle_delay_windows: float | None = None  # None: not found within the incident


@dataclass
class Clean:
    generator: str
    level: float
    days: float
    opswatch_slices: int
    textbook_slices: int
    opswatch_false_alerts: int
    opswatch_boundary_alerts: int
    textbook_false_alerts: int = 0


@dataclass
class Band:
    low: float
    high: float
    scenarios: int
    opswatch_recall: float | None
    textbook_recall: float | None
    oracle_recall: float | None


@dataclass
class Targets:
    detected_from_20_nats: bool
    delay_within_textbook_plus_1: bool
    median_delay_within_textbook: bool
    failures: list[str] = field(default_factory=list)


@dataclass
class GradedSummary:
    rows: list[Row]
    clean: list[Clean]
    textbook_threshold: float
    oracle_threshold: float
    bands: list[Band]
    opswatch_median_delay_windows: float | None
    textbook_median_delay_windows: float | None
    both_detected_median_delay_windows: dict[str, float | None]
    false_alerts_per_day_per_100_slices: dict[str, float]
    found_from_20_nats: dict[str, int]  # scenarios, and those each detector found
    targets: Targets

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ts(alert_start: str) -> float:
    return datetime.fromisoformat(alert_start.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Alert:
    """What judging needs of an alert, from either detector."""

    metric: str
    slice: dict[str, str]
    start: float


def _feed(
    events: Iterator[dict[str, Any]], engine: Engine, windows: Aggregator, book: Textbook
) -> list[dict[str, Any]]:
    updates: list[dict[str, Any]] = []
    for event in events:
        ts, leaf = event_time(event), leaf_of(event)
        engine.add(event, ts, leaf)
        updates += engine.poll()
        windows.add(event, ts, leaf)
        for closed in windows.advance():
            book.add(closed)
    return updates


def _first(updates: Iterable[dict[str, Any]], since: datetime) -> list[Alert]:
    first: dict[str, dict[str, Any]] = {}
    for update in updates:
        first.setdefault(update["id"], update)
    alerts = [Alert(a["metric"], dict(a["slice"]), _ts(a["started_at"])) for a in first.values()]
    return [a for a in alerts if a.start >= since.timestamp()]


@dataclass
class History:
    """One generator and level at the fork: what every scenario starts from."""

    generator: str
    level: float
    seed: int
    engine: bytes
    windows: bytes
    checkpoint: bytes
    x: dict[int, np.ndarray]
    n: dict[int, np.ndarray]
    clean: Clean
    series: list[tuple[str, str]]
    clean_starts: list[int]
    clean_paths: dict[str, np.ndarray]


def _textbook(catalog: Catalog, gen: Generator, settings: EngineSettings) -> Textbook:
    keys = sorted({k for leaf in gen.shares() for k in ancestors(leaf)})
    return Textbook(catalog, keys, settings.window_s)


def run_history(
    name: str, level: float, seed: int, catalog: Catalog, settings: EngineSettings
) -> History:
    """The shared history to the fork, then the clean run on from it to CLEAN_END."""
    gen = generator(name, level, seed, CLEAN_END)
    engine = Engine(catalog, settings)
    windows = Aggregator(catalog, settings.window_s, settings.lateness_s)
    book = _textbook(catalog, gen, settings)
    updates = _feed(gen.events_until(FORK), engine, windows, book)
    snap = orjson.dumps(engine.snapshot())
    windows_snap = orjson.dumps(windows.snapshot())
    checkpoint = gen.checkpoint()
    x, n = dict(book.x), dict(book.n)
    updates += _feed(gen.resume(checkpoint), engine, windows, book)
    updates += engine.flush()
    alerts = _first(updates, JUDGED_FROM)
    boundary = CLEAN_END.timestamp() - BOUNDARY_WINDOWS * settings.window_s
    starts, paths = book.statistics(int(JUDGED_FROM.timestamp()), int(boundary))
    clean = Clean(
        name,
        level,
        (CLEAN_END - JUDGED_FROM).total_seconds() / 86400,
        len(engine.evaluator.slices),
        len(book.slices),
        sum(1 for a in alerts if a.start < boundary),
        sum(1 for a in alerts if a.start >= boundary),
    )
    return History(
        name, level, seed, snap, windows_snap, checkpoint, x, n, clean, book.series, starts, paths
    )


@dataclass(frozen=True)
class Task:
    history: int  # index into the histories a worker holds
    scenario: Graded
    threshold: float


_HISTORIES: list[History] = []


def _hold(histories: list[History]) -> None:
    _HISTORIES[:] = histories


def _judge(
    alerts: Sequence[Alert], scenario: Graded, slice_: Mapping[str, str], end: float, w: int
) -> Verdict:
    start = INCIDENT_AT.timestamp()
    stop = start + scenario.duration.total_seconds()
    grace = stop + GRACE.total_seconds()
    boundary = end - BOUNDARY_WINDOWS * w

    def related(a: Alert) -> bool:
        return compatible(a.slice, dict(slice_)) and start <= a.start <= grace

    inside = [a for a in alerts if a.start < boundary]
    hits = sorted(
        (a for a in alerts if related(a) and a.metric in scenario.metrics and a.start < stop),
        key=lambda a: a.start,
    )
    first = f"{hits[0].metric} {slice_key(hits[0].slice)}" if hits else ""
    return Verdict(
        bool(hits),
        (hits[0].start - start) / w if hits else None,
        sum(1 for a in inside if not related(a)),
        len(alerts) - len(inside),
        first,
    )


def oracle(
    gen: Generator,
    book: Textbook,
    slice_: Mapping[str, str],
    scenario: Graded,
    h: float,
    w: int,
) -> float | None:
    """The delay in windows of a detector that knows the normal and the changed rates
    and when the incident starts: per metric of the scenario, a one-sided CUSUM of the
    window's realised log-likelihood ratio (``window_llr``, on the counts the textbook's
    windows hold for the affected slice) from the incident's first window, alarming
    above ``h``; the earliest metric's. None: no alarm within the incident."""
    start = int(INCIDENT_AT.timestamp())
    stop = start + int(scenario.duration.total_seconds())
    key = slice_key(slice_)
    kinds = {m.name: m.kind for m in book.metrics}
    columns = {m: book.series.index((key, m)) for m in scenario.metrics if (key, m) in book.series}
    cusum = dict.fromkeys(columns, 0.0)
    for t in range(start, stop, w):
        changed = gen.expected(slice_, t, t + w, incidents=True)
        normal = gen.expected(slice_, t, t + w, incidents=False)
        x, n = book.values(t)
        for m, col in columns.items():
            num = n[col] if kinds[m] == "sum" else x[col]
            llr = window_llr(m, float(num), float(n[col]), changed, normal)
            cusum[m] = max(0.0, cusum[m] + llr)
        if any(c > h for c in cusum.values()):
            return (t - start) / w
    return None


def run_scenario(task: Task, catalog: Catalog, settings: EngineSettings) -> Row:
    hist = _HISTORIES[task.history]
    scenario = task.scenario
    end = INCIDENT_AT + scenario.duration + AFTER
    probe = generator(hist.generator, hist.level, hist.seed, end)
    slice_ = slice_for(slice_shares(probe), scenario.share)
    incident = scenario.incident(slice_)
    gen = generator(hist.generator, hist.level, hist.seed, end, [incident])
    stop = (INCIDENT_AT + scenario.duration).timestamp()
    w = settings.window_s
    nats = {m: evidence(gen, slice_, m, INCIDENT_AT.timestamp(), stop, w) for m in scenario.metrics}
    strongest = max(nats, key=lambda m: nats[m])

    engine = Engine(catalog, settings)
    engine.restore(orjson.loads(hist.engine))
    windows = Aggregator(catalog, w, settings.lateness_s)
    windows.restore(orjson.loads(hist.windows))
    book = _textbook(catalog, gen, settings)
    book.x, book.n = dict(hist.x), dict(hist.n)
    updates = _feed(gen.resume(hist.checkpoint), engine, windows, book)
    updates += engine.flush()
    ours = _first(updates, FORK)
    starts, paths = book.statistics(int(JUDGED_FROM.timestamp()), max(book.x) + w)
    theirs = [
        Alert(e.series[1], parse_slice_key(e.series[0]), float(e.start))
        for e in episodes(book.series, starts, paths, task.threshold)
        if e.start >= FORK.timestamp()
    ]
    return Row(
        hist.generator,
        hist.level,
        scenario.name,
        scenario.kind,
        scenario.shape,
        slice_,
        slice_shares(probe)[slice_key(slice_)],
        round(nats[strongest], 2),
        strongest,
        scenario.duration.total_seconds() / w,
        scenario.watched,
        _judge(ours, scenario, slice_, end.timestamp(), w),
        _judge(theirs, scenario, slice_, end.timestamp(), w),
        oracle(gen, book, slice_, scenario, _oracle_threshold(catalog, settings), w),
    )


def _oracle_threshold(catalog: Catalog, settings: EngineSettings) -> float:
    """The oracle alarms where opswatch's CUSUMs do: at the threshold the budget sets."""
    return settings.cusum_threshold(len(catalog.metrics))


def _rate(false: int, clean: Sequence[Clean], slices: Callable[[Clean], int]) -> float:
    exposure = sum(c.days * slices(c) / 100 for c in clean)
    return false / exposure if exposure else 0.0


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _recall(rows: Sequence[Row], found: Callable[[Row], bool]) -> float | None:
    return sum(found(r) for r in rows) / len(rows) if rows else None


def summarise(
    rows: list[Row], clean: list[Clean], threshold: float, oracle_threshold: float
) -> GradedSummary:
    judged = [r for r in rows if r.watched]
    bands = []
    for low, high in pairwise(BANDS):
        inside = [r for r in judged if low <= r.evidence_nats < high]
        bands.append(
            Band(
                low,
                high,
                len(inside),
                _recall(inside, lambda r: r.opswatch.detected),
                _recall(inside, lambda r: r.textbook.detected),
                _recall(inside, lambda r: r.oracle_delay_windows is not None),
            )
        )
    steps = [r for r in judged if r.shape != "creep"]
    ours = [r.opswatch.delay_windows for r in steps if r.opswatch.delay_windows is not None]
    theirs = [r.textbook.delay_windows for r in steps if r.textbook.delay_windows is not None]
    both = [r for r in steps if r.opswatch.detected and r.textbook.detected]
    both_ours = _median([r.opswatch.delay_windows or 0.0 for r in both])
    both_theirs = _median([r.textbook.delay_windows or 0.0 for r in both])
    failures = []
    for r in judged:
        label = f"{r.generator}@{r.level:g}: {r.scenario}"
        if r.evidence_nats >= TARGET_NATS and not r.opswatch.detected:
            also = "" if r.oracle_delay_windows is not None else " (the oracle too)"
            failures.append(f"{label}: missed at {r.evidence_nats:.0f} nats{also}")
        td, od = r.textbook.delay_windows, r.opswatch.delay_windows
        if td is not None and (od is None or od > td + 1):
            failures.append(f"{label}: delay {'-' if od is None else f'{od:.0f}'} > {td:.0f} + 1")
    clear = [r for r in judged if r.evidence_nats >= TARGET_NATS]
    found = {
        "scenarios": len(clear),
        "opswatch": sum(r.opswatch.detected for r in clear),
        "textbook": sum(r.textbook.detected for r in clear),
        "oracle": sum(r.oracle_delay_windows is not None for r in clear),
    }
    median_ok = both_ours is None or both_theirs is None or both_ours <= both_theirs
    if not median_ok:
        failures.append(f"median delay {both_ours} > textbook's {both_theirs}")
    return GradedSummary(
        rows,
        clean,
        threshold,
        oracle_threshold,
        bands,
        _median(ours),
        _median(theirs),
        {"opswatch": both_ours, "textbook": both_theirs},
        {
            "opswatch": _rate(
                sum(c.opswatch_false_alerts for c in clean), clean, lambda c: c.opswatch_slices
            ),
            "textbook": _rate(
                sum(c.textbook_false_alerts for c in clean), clean, lambda c: c.textbook_slices
            ),
        },
        found,
        Targets(
            not any("missed" in f for f in failures),
            not any(": delay" in f for f in failures),
            median_ok,
            failures,
        ),
    )


def run_graded(
    catalog: Catalog,
    settings: EngineSettings,
    seed: int = 42,
    quick: bool = False,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
    done: Callable[[Row], None] | None = None,
) -> GradedSummary:
    gens = GENERATORS[:1] if quick else GENERATORS
    levels = LEVELS[:1] if quick else LEVELS
    suite = QUICK if quick else SUITE
    # the busier level first: two workers then finish their histories together
    pairs = [(g, lv) for lv, g in product(sorted(levels, reverse=True), gens)]
    with ExitStack() as stack:
        pool = stack.enter_context(ProcessPoolExecutor(jobs)) if jobs > 1 else None
        mapper = pool.map if pool is not None else map
        histories: list[History] = []
        for hist in mapper(
            run_history,
            [g for g, _ in pairs],
            [lv for _, lv in pairs],
            [seed] * len(pairs),
            [catalog] * len(pairs),
            [settings] * len(pairs),
        ):
            histories.append(hist)
            if progress is not None:
                c = hist.clean
                progress(
                    f"{c.generator}@{c.level:g}: history and clean run, opswatch "
                    f"{c.opswatch_false_alerts} false ({c.opswatch_boundary_alerts} boundary)"
                )
        clean = [h.clean for h in histories]
        ours = sum(c.opswatch_false_alerts for c in clean)
        allowed = math.floor(
            _rate(ours, clean, lambda c: c.opswatch_slices)
            * sum(c.days * c.textbook_slices / 100 for c in clean)
            + 1e-9
        )
        threshold = calibrate([h.clean_paths for h in histories], allowed)
        boundary = CLEAN_END.timestamp() - BOUNDARY_WINDOWS * settings.window_s
        for h in histories:
            found = episodes(h.series, h.clean_starts, h.clean_paths, threshold)
            h.clean.textbook_false_alerts = sum(1 for e in found if e.start < boundary)
        tasks = [Task(i, s, threshold) for i in range(len(histories)) for s in suite]
        if pool is not None:
            pool.shutdown()
            pool = stack.enter_context(
                ProcessPoolExecutor(jobs, initializer=_hold, initargs=(histories,))
            )
            mapper = pool.map
        else:
            _hold(histories)
        rows = []
        for row in mapper(run_scenario, tasks, [catalog] * len(tasks), [settings] * len(tasks)):
            rows.append(row)
            if done is not None:
                done(row)
    return summarise(rows, clean, threshold, _oracle_threshold(catalog, settings))


def _delay(windows: float | None) -> str:
    return "missed" if windows is None else f"{windows:.0f} w"


def _verdict(v: Verdict) -> str:
    if v.detected and v.delay_windows is None:
        return "detected"
    return _delay(v.delay_windows) if v.detected else "missed"


HEADER = (
    f"{'generator':16} {'scenario':42} {'evidence':>8}  {'opswatch':>9} {'textbook':>9} "
    f"{'oracle':>7}  false (opswatch/textbook)"
)


def format_row(row: Row) -> str:
    """One scenario, both detectors side by side; delays in windows."""
    watched = "" if row.watched else "  (not watched: the catalog alerts the other way)"
    return (
        f"{row.generator + '@' + format(row.level, 'g'):16} {row.scenario:42} "
        f"{row.evidence_nats:7.1f}n  {_verdict(row.opswatch):>9} {_verdict(row.textbook):>9} "
        f"{_delay(row.oracle_delay_windows):>7}  "
        f"{row.opswatch.false_alerts}/{row.textbook.false_alerts}{watched}"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_summary(summary: GradedSummary) -> list[str]:
    lines = [
        f"{'evidence (nats)':16} {'scenarios':>9} {'opswatch':>9} {'textbook':>9} "
        f"{'oracle':>9}  (recall)"
    ]
    for b in summary.bands:
        if b.scenarios:
            lines.append(
                f"{f'{b.low:g}-{b.high:g}':16} {b.scenarios:9} "
                f"{_fmt(b.opswatch_recall):>9} {_fmt(b.textbook_recall):>9} "
                f"{_fmt(b.oracle_recall):>9}"
            )
    both = summary.both_detected_median_delay_windows
    rate = summary.false_alerts_per_day_per_100_slices
    found = summary.found_from_20_nats
    lines += [
        f"median delay (steps, windows): opswatch {_fmt(summary.opswatch_median_delay_windows)}, "
        f"textbook {_fmt(summary.textbook_median_delay_windows)}; where both detected: "
        f"{_fmt(both['opswatch'])} vs {_fmt(both['textbook'])}",
        f"clean runs, false alerts per day per 100 slices: opswatch {rate['opswatch']:.2f}, "
        f"textbook {rate['textbook']:.2f} (threshold {summary.textbook_threshold:g} nats); "
        f"boundary alerts of opswatch: {sum(c.opswatch_boundary_alerts for c in summary.clean)}",
        f"found of the {found['scenarios']} scenarios >= {TARGET_NATS:g} nats: opswatch "
        f"{found['opswatch']}, textbook {found['textbook']}, oracle {found['oracle']} (the "
        f"true rates and onset known, alarming above opswatch's {summary.oracle_threshold:.1f} "
        "nats)",
        f"targets: every scenario >= {TARGET_NATS:g} nats detected "
        f"{'yes' if summary.targets.detected_from_20_nats else 'NO'}; each delay <= textbook + 1 "
        f"{'yes' if summary.targets.delay_within_textbook_plus_1 else 'NO'}; median delay <= "
        f"textbook's {'yes' if summary.targets.median_delay_within_textbook else 'NO'}",
        *(f"  {f}" for f in summary.targets.failures),
    ]
    return lines
