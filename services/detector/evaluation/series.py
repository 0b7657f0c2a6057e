"""Metric event series graded by evidence, beside a textbook z-score.

The series come from a generator of their own, not the simulator's: five
shapes a control room watches besides its orders, each in two regions
(``series.yaml`` declares them):

- ``backlog_orders``: a backlog read every minute that runs on from where it
  was (AR(1), lag-one autocorrelation 0.97 a minute), with a daily rhythm;
- ``latency_ms``: the mean of four requests a minute, log-normal (a
  heavy right tail), busier in the afternoon;
- ``refunds``: refunds counted each minute, a trickle by day, almost none at
  night (Poisson), summed per window;
- ``cold_room_c``: a temperature read every ten minutes, so every other
  window holds no reading;
- ``drivers_online``: drivers on shift read every minute, two daily peaks,
  a fifth fewer at weekends, autocorrelated (0.9 a minute).

Seven clean days (Monday to Sunday) are run once through the engine; each
scenario resumes the engine's snapshot for an eighth day with one incident in
one series in ``eu`` at 13:00 for two hours: a step or a creep (a ramp from
nothing to its size over the two hours) in the direction the series alerts
on, sized so that its evidence is about 5, 20 or 80 nats, and drivers going
to zero. The clean run goes on for the eighth day without incident.

Evidence is the log-likelihood ratio of the true change against the
generator's own noise model, summed over the incident's windows: the windows'
summaries' shift in standard deviations, through the AR(1) residuals'
innovations where the series runs on (so an hour of a backlog is not twelve
independent pieces of evidence); the Poisson Kullback-Leibler divergence for
the refunds.

The textbook: each window's summary against the same window of the previous
days (at least two, at most seven): z = (value - mean) / sd, the sd at least
half the median sd the series showed so far; an alert where z passes the
threshold on the side the series alerts on. The threshold is the smallest (on a
0.1 grid) that raises no more alert onsets on the clean run than opswatch's
false alerts there. Detection is judged alike for both: an alert on the
incident's series and region that starts inside the incident; delay in
windows from its start.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from services.common.events import leaf_of
from services.detector.engine.catalog import Catalog, load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings

DECLARATIONS = Path(__file__).with_name("series.yaml")
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
DAY_S = 86400
REGIONS = ("eu", "na")
INCIDENT_HOUR = 13
INCIDENT_S = 2 * 3600
TARGETS = (5.0, 20.0, 80.0)
BOUNDARY_WINDOWS = 3  # alerts started this close to the data's end are not counted

Level = Callable[[np.ndarray, int], np.ndarray]  # seconds from START, region -> level


def _hour(t: np.ndarray) -> np.ndarray:
    return np.asarray((t % DAY_S) / 3600.0)


def _bump(t: np.ndarray, at: float, width: float) -> np.ndarray:
    return np.asarray(np.exp(-(((_hour(t) - at) / width) ** 2)))


def _backlog(t: np.ndarray, region: int) -> np.ndarray:
    return (200.0, 120.0)[region] * (1.0 + 0.4 * np.sin(2 * np.pi * (_hour(t) - 9.0) / 24.0))


def _latency(t: np.ndarray, region: int) -> np.ndarray:
    return (250.0, 320.0)[region] * (1.0 + 0.3 * _bump(t, 14.0, 3.0))


def _refunds(t: np.ndarray, region: int) -> np.ndarray:
    day = np.clip(np.sin(np.pi * (_hour(t) - 7.0) / 15.0), 0.0, None)
    return (0.5, 0.3)[region] * (0.05 + day)


def _cold_room(t: np.ndarray, region: int) -> np.ndarray:
    return (3.5, 4.5)[region] + np.sin(2 * np.pi * (_hour(t) - 15.0) / 24.0)


def _drivers(t: np.ndarray, region: int) -> np.ndarray:
    weekend = (t // DAY_S) % 7 >= 5
    peaks = 0.25 + 0.45 * _bump(t, 12.0, 2.5) + 0.6 * _bump(t, 19.0, 2.5)
    return (400.0, 250.0)[region] * peaks * np.where(weekend, 0.8, 1.0)


@dataclass(frozen=True)
class Shape:
    """One generated series: its level, and each sample's noise around it.

    ``noise``: ``ar`` (autocorrelated ``phi`` a sample, marginal sd ``spread``
    times the level, or its square root with ``spread`` 0), ``lognormal``
    (sigma ``spread``, the mean kept at the level), ``poisson`` (the level is
    the rate a sample), ``normal`` (sd ``spread``)."""

    name: str
    level: Level
    every_s: int
    summary: str
    alert_on: str
    noise: str
    spread: float = 0.0
    phi: float = 0.0
    decimals: int = 0

    @property
    def side(self) -> float:
        return -1.0 if self.alert_on == "down" else 1.0

    def sd(self, level: np.ndarray) -> np.ndarray:
        """The marginal sd of one sample at this level."""
        if self.noise == "lognormal":
            return np.asarray(level * math.sqrt(math.expm1(self.spread**2)))
        if self.noise == "poisson" or (self.noise == "ar" and self.spread == 0.0):
            return np.asarray(np.sqrt(level))
        if self.noise == "ar":
            return np.asarray(self.spread * level)
        return np.full_like(level, self.spread)

    def draw(self, t: np.ndarray, region: int, rng: np.random.Generator) -> np.ndarray:
        level = self.level(t, region)
        if self.noise == "poisson":
            return rng.poisson(level).astype(float)
        if self.noise == "lognormal":
            s = self.spread
            values = level * rng.lognormal(-(s**2) / 2.0, s, len(t))
        elif self.noise == "normal":
            values = level + rng.normal(0.0, self.spread, len(t))
        else:
            shocks = rng.normal(0.0, 1.0, len(t)) * math.sqrt(1.0 - self.phi**2)
            shocks[0] = rng.normal()
            residual = np.empty(len(t))
            r = 0.0
            for i, shock in enumerate(shocks):
                r = self.phi * r + shock
                residual[i] = r
            values = level + self.sd(level) * residual
        return self.rounded(values)

    def rounded(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(np.round(np.maximum(values, 0.0), self.decimals))


SHAPES = (
    Shape("backlog_orders", _backlog, 60, "last", "up", "ar", spread=0.08, phi=0.97),
    Shape("latency_ms", _latency, 15, "mean", "up", "lognormal", spread=0.5, decimals=1),
    Shape("refunds", _refunds, 60, "sum", "up", "poisson"),
    Shape("cold_room_c", _cold_room, 600, "last", "up", "normal", spread=0.3, decimals=1),
    Shape("drivers_online", _drivers, 60, "last", "down", "ar", phi=0.9),
)


@dataclass(frozen=True)
class Incident:
    """``kind``: step, creep or stop; ``size``: in sds of the window summary at the
    incident's start (step, creep), or the rate's factor (refunds)."""

    shape: str
    kind: str
    size: float
    target: float | None  # the evidence it was sized for; None for a stop

    @property
    def label(self) -> str:
        size = f"x{self.size:.2f}" if self.shape == "refunds" else f"{self.size:.2f} sd"
        return f"{self.kind} {size}" if self.kind != "stop" else "stop"


def _shape(name: str) -> Shape:
    return next(s for s in SHAPES if s.name == name)


def _times(shape: Shape, days: int, region: int) -> np.ndarray:
    offset = 1 + 2 * region + SHAPES.index(shape)  # a few seconds into each minute
    return np.arange(offset, days * DAY_S, shape.every_s, dtype=float)


def _ramp(t: np.ndarray, start: float, kind: str) -> np.ndarray:
    inside = (t >= start) & (t < start + INCIDENT_S)
    ramp = np.clip((t - start) / INCIDENT_S, 0.0, 1.0) if kind == "creep" else np.ones_like(t)
    return np.asarray(np.where(inside, ramp, 0.0))


@dataclass
class Series:
    """One shape in one region over the run: sample times and values."""

    shape: Shape
    region: int
    t: np.ndarray
    values: np.ndarray

    def with_incident(
        self, incident: Incident, start: float, window_s: int, rng: np.random.Generator
    ) -> Series:
        shape, t = self.shape, self.t
        ramp = _ramp(t, start, incident.kind)
        level = shape.level(t, self.region)
        if incident.kind == "stop":
            values = np.where(ramp > 0, 0.0, self.values)
        elif shape.noise == "poisson":
            extra = rng.poisson(level * (incident.size - 1.0) * ramp)
            values = self.values + extra
        else:
            sd0 = _window_sd(shape, self.region, start, window_s)
            values = shape.rounded(self.values + shape.side * incident.size * sd0 * ramp)
        return Series(shape, self.region, t, values)


def _window_sd(shape: Shape, region: int, at: float, window_s: int) -> float:
    """The sd of a window's summary at time ``at``."""
    sd = float(shape.sd(shape.level(np.array([at]), region))[0])
    return sd / math.sqrt(window_s / shape.every_s) if shape.summary == "mean" else sd


def _windows(t: np.ndarray, window_s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted sample times by window: each window's index, its first sample and the
    sample after its last."""
    index, first = np.unique((t // window_s).astype(int), return_index=True)
    return index, first, np.append(first[1:], len(t))


def evidence(shape: Shape, region: int, incident: Incident, start: float, window_s: int) -> float:
    """Nats of the incident against the generator's noise model, over its windows."""
    t = _times(shape, int((start + INCIDENT_S) // DAY_S) + 1, region)
    t = t[(t >= start) & (t < start + INCIDENT_S)]
    level = shape.level(t, region)
    if shape.noise == "poisson":
        factor = 0.0 if incident.kind == "stop" else incident.size
        mu1 = level * (1.0 + (factor - 1.0) * _ramp(t, start, incident.kind))
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(mu1 > 0, mu1 * np.log(mu1 / level), 0.0) - mu1 + level
        return float(kl.sum())
    if incident.kind == "stop":
        shift = -level
    else:
        sd0 = _window_sd(shape, region, start, window_s)
        shift = shape.side * incident.size * sd0 * _ramp(t, start, incident.kind)
    sd = shape.sd(level)
    # each window's summary: its last sample's shift, or the mean of its samples'
    starts, first, ends = _windows(t, window_s)
    if shape.summary == "last":
        d = shift[ends - 1] / sd[ends - 1]
    else:
        counts = ends - first
        mean_shift = np.add.reduceat(shift, first) / counts
        mean_sd = np.sqrt(np.add.reduceat(sd**2, first)) / counts
        d = mean_shift / mean_sd
    # an autocorrelated series' evidence is in its innovations: a backlog that runs on
    # from where it was is not a new piece of evidence every window. The windows before
    # the incident had no shift, so its first window's innovation is its whole shift
    gap = window_s / shape.every_s if len(starts) > 1 else 1.0
    rho = shape.phi**gap if shape.noise == "ar" else 0.0
    innovations = d - rho * np.append(0.0, d[:-1])
    return float(np.sum(innovations**2) / (2.0 * (1.0 - rho**2)))


def sized(shape: Shape, kind: str, target: float, start: float, window_s: int) -> Incident:
    """The incident of ``kind`` whose evidence is ``target`` nats."""
    one = Incident(shape.name, kind, 1.0, target)
    if shape.noise != "poisson":  # evidence grows with the square of a shift
        k = math.sqrt(target / evidence(shape, 0, one, start, window_s))
        return Incident(shape.name, kind, k, target)
    low, high = 1.0, 100.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if evidence(shape, 0, Incident(shape.name, kind, mid, target), start, window_s) < target:
            low = mid
        else:
            high = mid
    return Incident(shape.name, kind, (low + high) / 2.0, target)


def generate(days: int, seed: int) -> list[Series]:
    out = []
    for i, shape in enumerate(SHAPES):
        for region in range(len(REGIONS)):
            rng = np.random.default_rng([seed, i, region])
            t = _times(shape, days, region)
            out.append(Series(shape, region, t, shape.draw(t, region, rng)))
    return out


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(START.timestamp() + at, UTC).isoformat()[:-6] + "Z"


def events(
    series: Sequence[Series], since: float, until: float
) -> Iterator[tuple[float, dict[str, Any]]]:
    """The samples in [since, until) as metric events, in time order, with their times
    (seconds from START)."""
    rows = []
    for index, s in enumerate(series):
        mask = (s.t >= since) & (s.t < until)
        for at, value in zip(s.t[mask], s.values[mask], strict=True):
            rows.append((float(at), index, float(value)))
    rows.sort()
    for n, (at, index, value) in enumerate(rows):
        s = series[index]
        yield (
            at,
            {
                "type": "metric",
                "event_id": f"{s.shape.name}-{REGIONS[s.region]}-{int(since)}-{n}",
                "ts": _stamp(at),
                "name": s.shape.name,
                "value": value,
                "region": REGIONS[s.region],
            },
        )


@dataclass(frozen=True)
class Alert:
    metric: str
    region: str
    start: float  # seconds from START


def _alerts(updates: Sequence[dict[str, Any]]) -> list[Alert]:
    first: dict[str, dict[str, Any]] = {}
    for update in updates:
        first.setdefault(update["id"], update)
    return [
        Alert(
            a["metric"],
            a["slice"].get("region", ""),
            datetime.fromisoformat(a["started_at"].replace("Z", "+00:00")).timestamp()
            - START.timestamp(),
        )
        for a in first.values()
    ]


def _run(
    engine: Engine, stream: Iterator[tuple[float, dict[str, Any]]], flush: bool
) -> list[Alert]:
    updates: list[dict[str, Any]] = []
    for at, event in stream:
        engine.add(event, START.timestamp() + at, leaf_of(event))
        updates += engine.poll()
    if flush:
        updates += engine.flush()
    return _alerts(updates)


def summaries(s: Series, window_s: int) -> dict[int, float]:
    """Window start (seconds from START) -> the window's summary, as declared."""
    starts, first, ends = _windows(s.t, window_s)
    how = s.shape.summary
    if how == "last":
        values = s.values[ends - 1]
    else:
        values = np.add.reduceat(s.values, first)
        if how == "mean":
            values = values / (ends - first)
    return {int(w) * window_s: float(v) for w, v in zip(starts, values, strict=True)}


@dataclass
class Textbook:
    """Per series, each window's z against the same window of the previous days."""

    window_s: int
    z: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

    def add(self, s: Series) -> None:
        values = summaries(s, self.window_s)
        zs: dict[int, float] = {}
        sds: list[float] = []
        for w in sorted(values):
            before = [values[w - d * DAY_S] for d in range(1, 8) if w - d * DAY_S in values]
            if len(before) < 2:
                continue
            sd = statistics.stdev(before)
            floor = 0.5 * statistics.median(sds) if sds else 0.0
            sds.append(sd)
            scale = max(sd, floor)
            if scale > 0:
                zs[w] = s.shape.side * (values[w] - statistics.fmean(before)) / scale
        self.z[(s.shape.name, REGIONS[s.region])] = zs

    def onsets(self, threshold: float, since: float) -> int:
        count = 0
        for zs in self.z.values():
            alarmed = False
            for w in sorted(zs):
                now = zs[w] > threshold
                count += now and not alarmed and w >= since
                alarmed = now
        return count

    def first(self, key: tuple[str, str], threshold: float, start: float) -> float | None:
        """Windows from ``start`` to the first alert onset inside the incident."""
        alarmed, zs = False, self.z[key]
        for w in sorted(zs):
            now = zs[w] > threshold
            if now and not alarmed and start <= w < start + INCIDENT_S:
                return (w - start) / self.window_s
            alarmed = now
        return None


@dataclass(frozen=True)
class Row:
    series: str
    incident: str
    evidence: float
    target: float | None
    opswatch: float | None  # delay in windows; None: missed
    textbook: float | None
    # opswatch's on the incident's day but those starting inside the incident on its series
    false_alerts: int


@dataclass(frozen=True)
class Summary:
    rows: list[Row]
    days: int
    series: int
    clean_false_opswatch: int
    clean_days_judged: int
    textbook_threshold: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _catalog() -> Catalog:
    return load_catalog(appended=DECLARATIONS)


def run_series(
    settings: EngineSettings,
    seed: int = 42,
    quick: bool = False,
    done: Callable[[Row], None] = lambda row: None,
) -> Summary:
    """The suite: history once, then each scenario and the clean day from its snapshot."""
    days = 4 if quick else 8
    w = settings.window_s
    catalog = _catalog()
    clean = generate(days, seed)
    last_day = (days - 1) * DAY_S
    start = last_day + INCIDENT_HOUR * 3600
    engine = Engine(catalog, settings)
    history = _run(engine, events(clean, 0, last_day), flush=False)
    snapshot = orjson.dumps(engine.snapshot())

    def day(series: Sequence[Series]) -> list[Alert]:
        resumed = Engine(catalog, settings)
        resumed.restore(orjson.loads(snapshot))
        alerts = _run(resumed, events(series, last_day, days * DAY_S), flush=True)
        boundary = days * DAY_S - BOUNDARY_WINDOWS * w
        return [a for a in alerts if a.start < boundary]

    # an alert open across the fork is in both runs
    clean_false = len(set(history) | set(day(clean)))
    book = Textbook(w)
    for s in clean:
        book.add(s)
    threshold = next(
        t / 10.0 for t in range(10, 1001) if book.onsets(t / 10.0, 2 * DAY_S) <= clean_false
    )
    rows = []
    for incident in _suite(start, w, quick):
        shape = _shape(incident.shape)
        index = next(i for i, s in enumerate(clean) if s.shape is shape and s.region == 0)
        rng = np.random.default_rng([seed, 99, index])
        series = list(clean)
        series[index] = clean[index].with_incident(incident, start, w, rng)
        alerts = day(series)
        key = (shape.name, REGIONS[0])
        hits = sorted(
            a.start
            for a in alerts
            if (a.metric, a.region) == key and start <= a.start < start + INCIDENT_S
        )
        mine = Textbook(w)
        mine.add(series[index])
        row = Row(
            shape.name,
            incident.label,
            round(evidence(shape, 0, incident, start, w), 1),
            incident.target,
            (hits[0] - start) / w if hits else None,
            mine.first(key, threshold, start),
            len(alerts) - len(hits),
        )
        done(row)
        rows.append(row)
    return Summary(rows, days, len(clean), clean_false, days - 1, threshold)


def _suite(start: float, window_s: int, quick: bool) -> list[Incident]:
    if quick:
        return [
            sized(_shape("latency_ms"), "step", 80.0, start, window_s),
            sized(_shape("refunds"), "step", 20.0, start, window_s),
            Incident("drivers_online", "stop", 1.0, None),
        ]
    out = [
        sized(shape, kind, target, start, window_s)
        for shape in SHAPES
        for kind in ("step", "creep")
        for target in TARGETS
    ]
    return [*out, Incident("drivers_online", "stop", 1.0, None)]


HEADER = f"{'series':16} {'incident':16} {'evidence':>9}  {'opswatch':>8}  {'textbook':>8}  false"


def _delay(delay: float | None) -> str:
    return "missed" if delay is None else f"{delay:.0f} w"


def format_row(row: Row) -> str:
    return (
        f"{row.series:16} {row.incident:16} {row.evidence:8.1f}n  {_delay(row.opswatch):>8}  "
        f"{_delay(row.textbook):>8}  {row.false_alerts}"
    )


def format_summary(summary: Summary) -> list[str]:
    lines = [f"{'evidence':10} {'scenarios':>9} {'opswatch':>9} {'textbook':>9}  (found)"]
    groups: dict[str, list[Row]] = {}
    for row in summary.rows:
        name = "stop" if row.target is None else f"~{row.target:g} nats"
        groups.setdefault(name, []).append(row)
    for name, rows in groups.items():
        ours = sum(r.opswatch is not None for r in rows)
        theirs = sum(r.textbook is not None for r in rows)
        lines.append(f"{name:10} {len(rows):9} {ours:9} {theirs:9}")
    judged = summary.series * summary.clean_days_judged
    lines.append(
        f"clean run: {summary.series} series over {summary.days} days, opswatch "
        f"{summary.clean_false_opswatch} false alerts ({judged} series-days judged, the first "
        f"day warming up); textbook threshold z > {summary.textbook_threshold:.1f}, calibrated "
        "to that"
    )
    return lines
