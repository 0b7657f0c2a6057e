"""Stage two: merge partial windows per slice and judge them.

Partials of one window arrive from every source (a detector worker's
partition, or the single source of a replay). A window is judged only once
every expected source's watermark has passed its end, so the outcome depends
on event time alone, never on arrival order or the wall clock: that is what
makes replay give what production gave.

For each (slice, metric) the evaluator scores before it learns, and does not
learn from a window it found anomalous. What looks anomalous goes, with the
number of tests made, into a report for stage three (``explain``), which
controls the false discovery rate across slices, picks the level that explains
a change and keeps the alerts' lifecycle.

Metric event series are judged the same way, each (name, slice) in the
windows it has samples in, by the seasonal-level detector; each series counts
as a tracked slice against the cardinality guard.
"""

from __future__ import annotations

import base64
import bisect
import math
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .aggregate import Acc
from .calendar import Applied, Calendar, Entry
from .catalog import SUMMARIES, Catalog, CompiledMetric
from .detectors import DESIGNS, Detector, Observation, Verdict, detector_for, evidence
from .marks import Marks
from .members import Members, whole
from .slices import parse_slice_key, slice_key

UNJUDGED = ("low_volume", "max_slices", "idle_source")
Occurrence = tuple[Entry, int, int]  # a calendar entry, and the span of one occurrence
SERIES_WINDOWS = 48  # recent windows kept per (slice, metric), sent with a new alert


def _depth(slice_key: str) -> int:
    """How many dimensions a slice fixes (the all-up slice, ``*``, none)."""
    return slice_key.count("=")


@dataclass(frozen=True)
class EngineSettings:
    window_s: int = 300
    lateness_s: int = 120
    alpha: float = 1e-5
    min_effect: float = 0.1
    min_count_delta: float = 3.0
    # false alerts from accumulated evidence (CUSUMs) allowed per day per 100
    # tracked slices, all metrics together: the CUSUMs' threshold follows from it
    false_alerts_per_day: float = 0.5
    hold_windows: int = 12  # at most this many windows in a row unlearned while evidence builds
    fdr: float = 1e-3
    explain_share: float = 0.6
    resolve_after: int = 3
    timezone: str = "UTC"
    max_slices: int = 20_000  # tracked by one evaluator (a partition of stage two)
    min_slice_volume: float = 30.0  # events (or users) seen before a slice is tracked
    max_metric_names: int = 100  # distinct names of metric events taken (by stage one)
    kpi_slices: int = 200  # slices whose KPIs the last window leaves in ``kpis``

    def cusum_threshold(self, metrics: int) -> float:
        """The level ``h`` at which a CUSUM alarms, from the false-alert budget.

        A CUSUM of log-likelihood ratios crosses ``h`` under no change at most
        once in ``e**h`` windows on average (Lorden's bound), so with ``metrics``
        metrics per slice, each watched by ``DESIGNS`` design shifts a side, a
        slice raises at most ``windows a day x metrics x DESIGNS x e**-h`` false
        alarms a day: ``h`` is set so that 100 slices stay within the budget.
        The bound is conservative (designs and metrics on the same events are
        far from independent), so the budget is an upper bound, not a target.
        """
        per_day = 86400 / self.window_s * max(metrics, 1) * DESIGNS * 100
        return math.log(per_day / self.false_alerts_per_day)

    def window_alpha(self, metrics: int) -> float:
        """The significance level of one window's own test: ``alpha``, or less where
        the false-alert budget asks for less. A window's p-value falls below a level
        under no change with at most that probability, and 100 slices make
        ``windows a day x metrics x 100`` such tests a day: the level is held to
        the budget, as the CUSUMs' threshold is (each on its own)."""
        per_day = 86400 / self.window_s * max(metrics, 1) * 100
        return min(self.alpha, self.false_alerts_per_day / per_day)


@dataclass(frozen=True, slots=True)
class Cusum:
    """One-sided cumulative sums of log-likelihood ratios, one per shift and side.

    A sum at or above the threshold ``h`` is an alarm; it starts again from zero
    at the first window whose evidence favours no shift, so the alarm ends with
    the shift instead of lingering on while the sum drains.
    """

    up: tuple[float, ...] = ()
    down: tuple[float, ...] = ()

    def update(self, verdict: Verdict, h: float) -> Cusum:
        """Add a window's evidence, however little. A sum is kept below ``1.1 h``,
        and one at the threshold starts again from zero at the first window whose
        evidence favours no shift, so the alarm ends with the shift instead of
        lingering while a large sum drains (after a spike of a few minutes, a
        sparse slice's sum would otherwise stay near the threshold for hours)."""
        if verdict.warming_up:
            return self

        cap = 1.1 * h

        def step(sums: tuple[float, ...], llrs: tuple[float, ...]) -> tuple[float, ...]:
            if not llrs:  # no evidence either way (a ratio without a denominator)
                return sums
            if len(sums) != len(llrs):  # the designs changed: start again
                sums = (0.0,) * len(llrs)
            out = []
            for s, x in zip(sums, llrs, strict=True):
                if s >= h and x < 0:
                    out.append(0.0)
                    continue
                # min(cap, max(0.0, s + x)) without the calls
                total = s + x
                total = total if total > 0.0 else 0.0
                out.append(total if total < cap else cap)
            return tuple(out)

        return Cusum(step(self.up, verdict.llr_up), step(self.down, verdict.llr_down))

    def level(self, alert_on: str) -> float:
        return self.side(alert_on)[0]

    def alarm(self, verdict: Verdict, alert_on: str, h: float) -> tuple[float, bool]:
        """The ``level`` on the sides the metric alerts on, and whether it is an
        alarm: at the threshold, with the window this sum has just added leaning
        the same way. A sum at the threshold after the window's evidence was added
        favours the shift in that window too (one that did not would have started
        it again), however little the window says alone: a sparse slice's window
        without orders where 1.2 were expected is no surprise on its own, yet the
        twelfth in a row is an alarm."""
        level, side = self.side(alert_on)
        return level, level >= h and side == verdict.direction()

    def side(self, alert_on: str) -> tuple[float, str]:
        """The highest sum on the sides the metric alerts on, and its side."""
        up, down = max(self.up, default=0.0), max(self.down, default=0.0)
        if alert_on == "up" or (alert_on == "both" and up >= down):
            return up, "up"
        return down, "down"


@dataclass(frozen=True, slots=True)
class Ring:
    """The last ``SERIES_WINDOWS`` consecutive windows of one (slice, metric):
    observed, expected, low and high of each, oldest first, as float32 (16 bytes a
    window). ``last`` is the start of the newest."""

    last: int
    values: array[float]

    def add(
        self,
        start: int,
        window_s: int,
        point: tuple[float, float, float, float],
        fill: bool = False,
    ) -> Ring:
        """The ring with a window added; a gap (never between windows judged in turn)
        starts it again, so each entry's start follows from ``last``, or with ``fill``
        (a metric event series, judged in the windows it has samples in) is filled
        with windows of no value."""
        kept = self.values if start == self.last + window_s else array("f")
        if fill and self.values and start > self.last + window_s:
            gap = min((start - self.last) // window_s - 1, SERIES_WINDOWS)
            kept = self.values + array("f", [math.nan] * (4 * gap))
        values = kept[-4 * (SERIES_WINDOWS - 1) :]  # a copy
        values.extend(point)
        return Ring(start, values)

    def points(self, window_s: int) -> list[list[float | None]]:
        """[start, observed, expected, low, high] per window, oldest first; float32's
        seven significant digits, None for a value that is not a number."""

        def plain(x: float) -> float | None:
            return float(f"{x:.7g}") if math.isfinite(x) else None

        n = len(self.values) // 4
        return [
            [self.last - (n - 1 - i) * window_s, *map(plain, self.values[4 * i : 4 * i + 4])]
            for i in range(n)
        ]

    def to_json(self) -> list[Any]:
        return [self.last, base64.b64encode(self.values.tobytes()).decode()]

    @classmethod
    def from_json(cls, raw: list[Any]) -> Ring:
        values = array("f")
        values.frombytes(base64.b64decode(raw[1]))
        return cls(int(raw[0]), values)


def empty_ring() -> Ring:
    return Ring(0, array("f"))


@dataclass(slots=True)
class SliceState:
    since: int  # the first window judged
    detectors: dict[str, Any] = field(default_factory=dict)  # metric -> detector state
    cusums: dict[str, Cusum] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # metric -> windows not learned in a row
    rings: dict[str, Ring] = field(default_factory=dict)  # metric -> recent windows


def observation(
    metric: CompiledMetric, acc: Acc, hour: int, weekday: int = 0, expect: float = 1.0
) -> Observation:
    x = acc.distinct[metric.num].count() if metric.num_distinct else acc.counts[metric.num]
    if metric.kind == "ratio":
        assert metric.den is not None
        n = acc.distinct[metric.den].count() if metric.den_distinct else acc.counts[metric.den]
        return Observation(x, n, 0.0, hour, weekday, expect)
    if metric.sumsq is None:
        return Observation(x, sumsq=x, hour=hour, weekday=weekday, expect=expect)
    sumsq = acc.counts[metric.sumsq]
    assert metric.n is not None
    return Observation(x, acc.counts[metric.n], sumsq, hour, weekday, expect)


def severity(verdict: Verdict, p: float) -> str:
    effect = abs(verdict.observed - verdict.expected) / max(abs(verdict.expected), 1e-9)
    if effect >= 0.5 and p <= 1e-8:
        return "critical"
    if effect >= 0.2:
        return "warning"
    return "info"


@dataclass(frozen=True)
class Report:
    """What one stage-two source found in one window (``start`` None: progress only).

    ``tests`` counts the (slice, metric) pairs judged per metric, the
    denominator of the false discovery rate; ``candidates`` are the pairs that
    look anomalous on their own; ``until`` is the event time up to which this
    source has judged every window. ``census`` gives, per ratio metric and
    slice judged, the denominator and the numerator the slice's own baseline
    expected: what stage three needs to split a ratio's change between rates
    within sub-slices and the traffic mix across them. ``sampled`` names the
    metric event series (``name|slice``) judged in the window: one without
    samples in it says nothing, and its alert neither fires nor counts towards
    resolving there.
    """

    until: int
    start: int | None = None
    tests: dict[str, int] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    census: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    sampled: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "until": self.until,
            "w": self.start,
            "t": self.tests,
            "c": self.candidates,
            "m": self.census,
            **({"s": self.sampled} if self.sampled else {}),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Report:
        census = {
            metric: {key: (float(n), float(x)) for key, (n, x) in slices.items()}
            for metric, slices in raw.get("m", {}).items()
        }
        sampled = list(raw.get("s", ()))
        return cls(raw["until"], raw["w"], dict(raw["t"]), list(raw["c"]), census, sampled)


@dataclass
class Evaluator:
    """Stage two: judges each (slice, metric) of a complete window, learns from the
    normal ones, and reports the anomalous-looking ones as candidates."""

    catalog: Catalog
    settings: EngineSettings
    sources: tuple[str, ...]
    pending: dict[int, dict[str, Acc]] = field(default_factory=dict)
    marks: Marks = field(default_factory=Marks)
    slices: dict[str, SliceState] = field(default_factory=dict)
    evaluated_until: int | None = None
    # per window not judged yet, the event types a source closed it without (their
    # topic idle there): the metrics that read them are left unjudged in it
    unread: dict[int, set[str]] = field(default_factory=dict)
    late_partials: int = 0  # partials of windows already judged (dropped)
    # the cardinality guard: volume so far of slices not tracked yet, and the
    # slice-windows left unjudged, by reason ("low_volume", "max_slices")
    untracked: dict[str, float] = field(default_factory=dict)
    unjudged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNJUDGED, 0))
    warming: dict[str, int] = field(default_factory=dict)  # metric -> slices, last window
    # (metric, slice) -> (observed, expected, low, high) of the last window judged, for
    # the ``kpi_slices`` shallowest slices (all-up first, then one dimension, ...)
    kpis: dict[tuple[str, str], tuple[float, float, float, float]] = field(default_factory=dict)
    calendar: Calendar = field(default_factory=Calendar)
    # per calendar entry occurrence, family head slice and metric: what was observed
    # and what the ordinary (unscaled) baseline expected, while the entry lasts
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    finished: list[dict[str, Any]] = field(default_factory=list)  # ended; the caller drains
    # the metric event series tracked, per slice key: detector states etc. by name
    series: dict[str, SliceState] = field(default_factory=dict)
    # each source's first event time: the stream began with the earliest of them
    began: dict[str, float] = field(default_factory=dict)
    incomplete: int = 0  # windows the stream began in the middle of: never judged
    midway: int | None = None  # the last of them dropped (each is counted once)

    def __post_init__(self) -> None:
        self._h = self.settings.cusum_threshold(len(self.catalog.metrics))
        self._alpha = self.settings.window_alpha(len(self.catalog.metrics))
        self._detectors = {
            m.name: detector_for(m.kind, self.settings.window_s, self._h)
            for m in self.catalog.metrics
        }
        # a series' detector, by how its windows sum it up
        self._series = {
            how: detector_for("series", self.settings.window_s, self._h, how) for how in SUMMARIES
        }
        self._series_metrics: dict[str, CompiledMetric] = {}
        self._tracked_series = 0
        self._series_names: set[str] = set()  # the names with a series tracked
        # the ``kpi_slices`` shallowest slices with a series tracked, as (depth, key)
        self._series_shown: list[tuple[int, str]] = []
        self._tz = ZoneInfo(self.settings.timezone)
        self._volume_slots = (
            [i for i, slot in enumerate(self.catalog.count_slots) if slot.power == 0],
            [i for i, slot in enumerate(self.catalog.distinct_slots) if slot.base is None],
        )

    def _volume(self, acc: Acc) -> float:
        counts, users = self._volume_slots
        return max(
            [acc.counts[i] for i in counts] + [acc.distinct[i].count() for i in users],
            default=0.0,
        )

    @property
    def tracked(self) -> int:
        """What the cardinality guard counts: slices tracked, and series tracked."""
        return len(self.slices) + self._tracked_series

    def _admit(self, key: str, acc: Acc, start: int) -> SliceState | None:
        """Track a new slice once it has shown enough volume, while there is room."""
        s = self.settings
        volume = self.untracked.get(key, 0.0) + self._volume(acc)
        if volume < s.min_slice_volume:
            if key in self.untracked or len(self.untracked) < s.max_slices:
                self.untracked[key] = volume
            self.unjudged["low_volume"] += 1
            return None
        if self.tracked >= s.max_slices:
            self.untracked[key] = volume
            self.unjudged["max_slices"] += 1
            return None
        self.untracked.pop(key, None)
        state = self.slices[key] = SliceState(start)
        return state

    def add_partial(self, window_start: int, key: str, acc: Acc) -> None:
        window = self.pending.setdefault(window_start, {})
        mine = window.get(key)
        if mine is None:
            window[key] = acc.copy()
        else:
            mine.merge(acc)

    def advance(
        self,
        source: str,
        watermark: float,
        idle: Mapping[str, float | None] | None = None,
        began: float | None = None,
    ) -> list[Report]:
        """Record a source's watermark; judge every window all sources have passed.

        ``idle``: the event types whose topic was idle at the source when it closed
        the windows up to this watermark, each with the event time up to which that
        topic had spoken or its silence was vouched for (None: neither). A window
        that ended after it lacks that type. ``began``: the source's first event
        time (None: a source that does not say)."""
        if began is not None:  # it only moves back: an earlier event taken late
            self.began[source] = min(began, self.began.get(source, began))
        w = self.settings.window_s
        through = int(watermark // w) * w
        before = self.marks.marks.get(source)
        first = through - w if before is None else int(before // w) * w
        if self.evaluated_until is not None:
            first = max(first, self.evaluated_until)
        for etype, last in (idle or {}).items():
            for start in range(first, through, w):
                if last is None or start + w > last:
                    self.unread.setdefault(start, set()).add(etype)
        self.marks.advance(source, watermark)
        return self._judge_complete()

    def mark_idle(self, source: str) -> list[Report]:
        """A source partition has gone quiet (the caller's clock says so): stop waiting."""
        self.marks.mark_idle(source)
        return self._judge_complete()

    def _judge_complete(self) -> list[Report]:
        """Judge every window all sources have passed, in order, including windows
        no partial arrived for: every slice already tracked is judged in each
        window, so a slice that goes silent is seen at the start of its silence."""
        complete = self.marks.low(self.sources)
        if complete is None:
            return []
        w = self.settings.window_s
        through = int(complete // w) * w
        whole = self._drop_begun_midway(through)
        if self.evaluated_until is None:
            first = min(self.pending, default=through)
        else:
            first = self.evaluated_until
            for start in [s for s in self.pending if s < first]:
                # only a source wrongly marked idle sends these; the window is judged
                del self.pending[start]
                self.late_partials += 1
        if whole is not None:
            first = max(first, whole)
        for start in [s for s in self.unread if s < first]:
            del self.unread[start]
        reports = [
            self._judge(start, self.pending.pop(start, {})) for start in range(first, through, w)
        ]
        if self.evaluated_until is None or through > self.evaluated_until:
            self.evaluated_until = through
            reports.append(Report(through))
        return reports

    def _drop_begun_midway(self, through: float = math.inf) -> int | None:
        """The first window the stream covered whole (None: no source said when it
        began, or long ago). The windows that started before the stream's first
        event, of all sources, hold only part of what happened in them: never
        judged, and their partials are dropped and counted once every source has
        passed them (before ``through``: by then each has said when it began, and
        an earlier event of theirs would be late). A source whose first event came
        later simply had nothing to say before: its part of a window is judged
        with the others'."""
        began = min(self.began.values(), default=-math.inf)
        if not math.isfinite(began):
            return None
        for start in sorted(s for s in self.pending if s < min(began, through)):
            del self.pending[start]
            if self.midway is None or start > self.midway:
                self.midway = start
                self.incomplete += 1
        w = self.settings.window_s
        return math.ceil(began / w) * w

    def flush(self) -> list[Report]:
        self._drop_begun_midway()
        reports = [self._judge(start, self.pending.pop(start)) for start in sorted(self.pending)]
        if reports:
            last = reports[-1].until
            self.evaluated_until = max(self.evaluated_until or last, last)
            reports.append(Report(self.evaluated_until))
        return reports

    def _judge(self, start: int, partials: Mapping[str, Acc]) -> Report:
        local = datetime.fromtimestamp(start, self._tz)  # DST-safe: the zone's own clock
        hour, weekday = local.hour, local.weekday()
        report = Report(start + self.settings.window_s, start)
        nothing = Acc.empty(self.catalog)
        self.warming = dict.fromkeys([*self.catalog.names, *sorted(self._series_names)], 0)
        self.kpis = {}
        unread = self.unread.pop(start, set())
        skipped = {
            m.name
            for m in self.catalog.metrics
            if unread and ("*" in unread or "*" in m.reads or unread & m.reads)
        }
        keys = sorted(self.slices.keys() | {k for k, a in partials.items() if a.measured()})
        shown = set(sorted(keys, key=lambda k: (_depth(k), k))[: self.settings.kpi_slices])
        active = self.calendar.at(start)
        self._finish_effects(start)
        heads = self._heads(active, start)
        for key in keys:
            acc = partials.get(key, nothing)
            state = self.slices.get(key) or self._admit(key, acc, start)
            if state is None:
                continue
            if skipped:
                self.unjudged["idle_source"] += 1  # neither judged nor learned from
            dims = parse_slice_key(key) if active else {}
            for metric in self.catalog.metrics:
                if metric.name in skipped:
                    continue
                if start < state.since + metric.history_s:
                    self.warming[metric.name] += 1  # the users' history is too short yet
                    continue
                obs = observation(metric, acc, hour, weekday)
                if key in heads:
                    self._measure(state, key, metric, obs, heads[key])
                applied = Calendar.applies(active, dims, metric.name) if active else None
                if applied is not None and applied.effect == "exclude":
                    continue  # neither judged nor learned from
                if applied is not None and applied.factor:
                    obs = replace(obs, expect=applied.factor)
                candidate = self._judge_metric(
                    state, key, metric, obs, report, key in shown, applied
                )
                if candidate is not None:
                    report.candidates.append(candidate)
        self._judge_series(partials, hour, weekday, report, active)
        return report

    def _judge_series(
        self,
        partials: Mapping[str, Acc],
        hour: int,
        weekday: int,
        report: Report,
        active: tuple[Entry, ...],
    ) -> None:
        """Judge each metric event series with samples in the window, in its own
        slice (a window without samples of a series says nothing of it). A series
        not tracked yet is tracked while the cardinality guard has room."""
        sampled = {key: acc.series for key, acc in partials.items() if acc.series}
        assert report.start is not None
        for key in sorted(sampled):
            state = self.series.get(key)
            dims = parse_slice_key(key) if active else {}
            for name, samples in sorted(sampled[key].items()):
                # an expect entry's factors name catalog metrics only: a series is
                # judged as usual in it; exclude and mute apply as to any metric
                applied = Calendar.applies(active, dims, name) if active else None
                if applied is not None and applied.effect == "exclude":
                    continue
                if state is None or name not in state.detectors:
                    if self.tracked >= self.settings.max_slices:
                        self.unjudged["max_slices"] += 1
                        continue
                    if state is None:
                        state = self.series[key] = SliceState(report.start)
                        self._show_series(key)
                    state.detectors[name] = self._detector(name).init_state()
                    self._series_names.add(name)
                    self._tracked_series += 1
                declared = self.catalog.series.of(name)
                metric = self._series_metric(name)
                obs = Observation(samples.summary(declared.summary), samples.n, 0.0, hour, weekday)
                report.sampled.append(f"{name}|{key}")
                candidate = self._judge_metric(state, key, metric, obs, report, False, applied)
                if candidate is not None:
                    candidate["alone"] = True  # a series does not add up across slices
                    if declared.severity is not None:
                        candidate["severity"] = declared.severity
                    report.candidates.append(candidate)

        # the KPIs of the shallowest series: each as its last window judged showed it,
        # so a series sampled less often than windows close stays on the dashboard
        for _, key in self._series_shown:
            for name, ring in self.series[key].rings.items():
                observed, expected, low, high = (float(f"{v:.7g}") for v in ring.values[-4:])
                self.kpis[(name, key)] = (observed, expected, low, high)

    def _show_series(self, key: str) -> None:
        """A slice with a series newly tracked: among the shallowest shown, if it is."""
        bisect.insort(self._series_shown, (_depth(key), key))
        del self._series_shown[self.settings.kpi_slices :]

    def _series_metric(self, name: str) -> CompiledMetric:
        """A metric event name as the judging steps see a metric."""
        metric = self._series_metrics.get(name)
        if metric is None:
            declared = self.catalog.series.of(name)
            metric = CompiledMetric(name, "series", "series", declared.alert_on, 0, False)
            self._series_metrics[name] = metric
        return metric

    def _detector(self, name: str) -> Detector[Any]:
        """The detector of a catalog metric, or of a metric event series."""
        detector = self._detectors.get(name)
        return detector or self._series[self.catalog.series.of(name).summary]

    @staticmethod
    def _heads(active: tuple[Entry, ...], start: int) -> dict[str, list[Occurrence]]:
        """The slices that head an active entry's families (an entry's own slices),
        each with those entries and the span of their occurrence."""
        heads: dict[str, list[Occurrence]] = {}
        for entry in active:
            span = entry.occurrence(start)
            assert span is not None
            for family in entry.spec.slices:
                head = slice_key({str(dim): value for dim, value in family.items()})
                heads.setdefault(head, []).append((entry, int(span[0]), int(span[1])))
        return heads

    def _measure(
        self,
        state: SliceState,
        key: str,
        metric: CompiledMetric,
        obs: Observation,
        entries: list[Occurrence],
    ) -> None:
        """Add a window of an entry to its observed effect: observed against the
        ordinary baseline (no factor), before the window is judged or learned."""
        detector = self._detectors[metric.name]
        verdict = detector.score(state.detectors.get(metric.name) or detector.init_state(), obs)
        per_value = metric.kind in ("ratio", "mean")
        if verdict.warming_up or (per_value and verdict.n <= 0):
            return
        weight = verdict.n if per_value else 1.0
        for entry, began, ends in entries:
            found = self.effects.setdefault(
                f"{entry.name}|{began}|{key}|{metric.name}",
                {
                    "name": entry.name,
                    "effect": entry.effect,
                    "slice": key,
                    "metric": metric.name,
                    "start": began,
                    "end": ends,
                    "factor_set": entry.factor(metric.name),
                    "observed": 0.0,
                    "ordinary": 0.0,
                    "windows": 0,
                },
            )
            found["observed"] += verdict.observed * weight
            found["ordinary"] += verdict.expected * weight
            found["windows"] += 1

    def ended_effects(self) -> list[dict[str, Any]]:
        """The observed effects of the calendar entries that ended since the last call."""
        done, self.finished = self.finished, []
        return done

    def _finish_effects(self, start: int) -> None:
        """Entries whose occurrence ended before ``start``: their effects are final."""
        for k in [k for k, e in self.effects.items() if e["end"] <= start]:
            self.finished.append(self.effects.pop(k))

    def _judge_metric(
        self,
        state: SliceState,
        key: str,
        metric: CompiledMetric,
        obs: Observation,
        report: Report,
        shown: bool,
        applied: Applied | None = None,
    ) -> dict[str, Any] | None:
        """Score a window, then learn from it unless it looks anomalous (or an
        ``expect`` entry scales its baseline: what a campaign shows is not normal)."""
        name, per_value = metric.name, metric.kind in ("ratio", "mean")
        detector = self._detector(name)
        det_state = state.detectors.get(name)
        if det_state is None:
            det_state = detector.init_state()
        verdict = detector.score(det_state, obs)
        h = self._h
        # Evidence accumulated over windows, for the kinds whose detectors give it
        cusum = None
        if verdict.llr_up or verdict.llr_down:
            cusum = (state.cusums.get(name) or Cusum()).update(verdict, h)
            state.cusums[name] = cusum
        if verdict.warming_up:
            self.warming[name] = self.warming.get(name, 0) + 1
        point = (verdict.observed, verdict.expected, verdict.low, verdict.high)
        assert report.start is not None
        ring = state.rings.get(name) or empty_ring()
        fill = metric.kind == "series"
        ring = state.rings[name] = ring.add(report.start, self.settings.window_s, point, fill)
        if shown and (verdict.n > 0 or not per_value):
            # the band so far, warming up or not: a dashboard shows it converge
            self.kpis[(name, key)] = point
        # nothing to judge: a ratio or mean without a denominator (a count of zero is news)
        scaled = applied is not None and applied.scales
        if verdict.warming_up or (verdict.n <= 0 and per_value):
            if not scaled:
                state.detectors[name] = detector.learn(det_state, obs)
            return None
        report.tests[metric.name] = report.tests.get(metric.name, 0) + 1
        if metric.kind == "ratio" and verdict.n > 0:
            expected_x = round(verdict.expected * verdict.n, 6)
            report.census.setdefault(metric.name, {})[key] = (verdict.n, expected_x)
        p = verdict.p_value(metric.alert_on)
        delta = abs(verdict.observed - verdict.expected)
        effect = delta / max(abs(verdict.expected), 1e-9)
        # evidence accumulated on the side the metric alerts on counts while this
        # window leans the same way
        level, sustained = (
            (0.0, False) if cusum is None else cusum.alarm(verdict, metric.alert_on, h)
        )
        big_enough = metric.kind != "count" or sustained or delta >= self.settings.min_count_delta
        anomalous = big_enough and (
            sustained or (p <= self._alpha and effect >= self.settings.min_effect)
        )
        if not anomalous and scaled:
            return None
        if not anomalous:
            # while evidence of a shift builds up, the recent level holds, for up
            # to ``hold_windows``: an incident too sparse to show in one window
            # must not become the normal it is judged against before its evidence
            # is complete, while a baseline that was off learns again. The hour
            # profile, over weeks, still learns the window: an hour it has wrong
            # would otherwise be held every day and never learned
            held = state.held.get(metric.name, 0)
            if level < h / 4:
                state.held.pop(metric.name, None)
            elif held < self.settings.hold_windows:
                state.held[metric.name] = held + 1
                state.detectors[metric.name] = detector.learn_profile(det_state, obs)
                return None
            # evidence that builds for longer than the hold is learned from again
            # until it has ebbed: a baseline that was simply off catches up
            state.detectors[metric.name] = detector.learn(det_state, obs)
            return None
        if sustained:
            p = min(p, math.exp(-level))
        scale = verdict.n if metric.kind in ("ratio", "mean") else 1.0
        found: dict[str, Any] = {
            "metric": metric.name,
            "slice": key,
            "p": p,
            "sustained": sustained,
            "excess": (verdict.observed - verdict.expected) * scale,
            "observed": verdict.observed,
            "expected": verdict.expected,
            "low": verdict.low,
            "high": verdict.high,
            "n": verdict.n,
            "score": evidence(p),  # p is the window's, or lower where evidence accumulated
            "severity": severity(verdict, p),
            "baseline": detector.name,
            "series": ring.points(self.settings.window_s),
        }
        if applied is not None:
            found["calendar"] = applied.to_json()
        return found

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = whole(self.members())
        return snap

    def members(self) -> Members:
        """The snapshot as ``Members``: each slice's state and partial made as it is written."""

        def window(partials: dict[str, Acc]) -> Members:
            return Members(lambda: ((key, acc.to_json()) for key, acc in partials.items()))

        def pending() -> Iterator[tuple[str, Members]]:
            return ((str(start), window(partials)) for start, partials in self.pending.items())

        def slices() -> Iterator[tuple[str, dict[str, Any]]]:
            return ((key, self.slice_snapshot(key)) for key in self.slices)

        def series() -> Iterator[tuple[str, dict[str, Any]]]:
            return ((key, self._state_json(state)) for key, state in self.series.items())

        def pairs() -> Iterator[tuple[str, Any]]:
            yield "pending", Members(pending)
            yield "marks", self.marks.to_json()
            yield "evaluated_until", self.evaluated_until
            yield "unread", {str(w): sorted(types) for w, types in self.unread.items()}
            yield "slices", Members(slices)
            yield "series", Members(series)
            yield "untracked", self.untracked
            yield "unjudged", self.unjudged
            yield "late_partials", self.late_partials
            yield "effects", self.effects
            yield "began", self.began
            yield "incomplete", self.incomplete
            yield "midway", self.midway

        return Members(pairs)

    def slice_snapshot(self, key: str) -> dict[str, Any]:
        return self._state_json(self.slices[key])

    def _state_json(self, state: SliceState) -> dict[str, Any]:
        return {
            "detectors": {
                name: self._detector(name).state_to_json(s) for name, s in state.detectors.items()
            },
            "cusums": {name: [c.up, c.down] for name, c in state.cusums.items()},
            "held": state.held,
            "since": state.since,
            "rings": {name: ring.to_json() for name, ring in state.rings.items()},
        }

    def restore_slice(self, key: str, raw: Mapping[str, Any]) -> None:
        self.slices[key] = self._state_from_json(raw, self._detectors)

    def _state_from_json(
        self, raw: Mapping[str, Any], detectors: Mapping[str, Detector[Any]]
    ) -> SliceState:
        """A slice's state; a detector state of a name ``detectors`` lacks is dropped."""
        state = SliceState(raw["since"], held=dict(raw.get("held", {})))
        for name, det in raw["detectors"].items():
            if name in detectors:
                state.detectors[name] = detectors[name].state_from_json(det)
        for name, (up, down) in raw["cusums"].items():
            state.cusums[name] = Cusum(tuple(up), tuple(down))
        for name, ring in raw.get("rings", {}).items():  # snapshots from before rings: none
            state.rings[name] = Ring.from_json(ring)
        return state

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.pending = {
            int(s): {k: Acc.from_json(a, self.catalog) for k, a in w.items()}
            for s, w in snap["pending"].items()
        }
        self.marks = Marks.from_json(snap["marks"])
        self.evaluated_until = snap["evaluated_until"]
        self.unread = {int(w): set(types) for w, types in snap.get("unread", {}).items()}
        self.untracked = dict(snap["untracked"])
        self.unjudged = {**self.unjudged, **snap["unjudged"]}
        self.late_partials = snap["late_partials"]
        # a snapshot from before ``began`` was kept: the stream had begun by the
        # windows it judged (long ago, written as null by JSON)
        known = {s: self.evaluated_until for s in self.marks.marks}
        began = snap.get("began", known if self.evaluated_until is not None else {})
        self.began = {s: -math.inf if t is None else t for s, t in began.items()}
        self.incomplete = snap.get("incomplete", 0)
        self.midway = snap.get("midway")
        self.effects = {k: dict(e) for k, e in snap.get("effects", {}).items()}
        for key, raw in snap["slices"].items():
            self.restore_slice(key, raw)
        self.series = {}  # a snapshot from before metric series were judged: none
        self._series_shown = []
        for key, raw in snap.get("series", {}).items():
            every = {name: self._detector(name) for name in raw["detectors"]}
            self.series[key] = self._state_from_json(raw, every)
            self._show_series(key)
        self._tracked_series = sum(len(state.detectors) for state in self.series.values())
        self._series_names = {name for state in self.series.values() for name in state.detectors}
