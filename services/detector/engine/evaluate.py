"""Stage two: merge partial windows per slice, judge them, keep alerts open or resolve them.

Partials of one window arrive from every source (a detector worker's
partition, or the single source of a replay). A window is judged only once
every expected source's watermark has passed its end, so the outcome depends
on event time alone, never on arrival order or the wall clock: that is what
makes replay give what production gave.

For each (slice, metric) the evaluator scores before it learns, and does not
learn from a window it found anomalous. An anomaly opens an alert (or updates
the open one); ``resolve_after`` normal windows in a row resolve it. Alert ids
derive from the fingerprint and the start of the anomaly, so reprocessing the
same events gives the same ids.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .aggregate import Acc
from .catalog import Catalog, CompiledMetric
from .detectors import Observation, Verdict, detector_for
from .slices import parse_slice_key


@dataclass(frozen=True)
class EngineSettings:
    window_s: int = 300
    lateness_s: int = 120
    alpha: float = 1e-5
    min_effect: float = 0.1
    min_count_delta: float = 3.0
    cusum_threshold: float = 12.0
    resolve_after: int = 3
    timezone: str = "UTC"


@dataclass(frozen=True)
class Cusum:
    """One-sided cumulative sums of log-likelihood ratios, one per shift and side."""

    up: tuple[float, ...] = (0.0, 0.0)
    down: tuple[float, ...] = (0.0, 0.0)

    def update(self, verdict: Verdict, cap: float) -> Cusum:
        if verdict.warming_up or verdict.n <= 0:
            return self

        def step(sums: tuple[float, ...], llrs: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(min(cap, max(0.0, s + x)) for s, x in zip(sums, llrs, strict=True))

        return Cusum(step(self.up, verdict.llr_up), step(self.down, verdict.llr_down))

    def level(self, alert_on: str) -> float:
        up, down = max(self.up), max(self.down)
        if alert_on == "up":
            return up
        if alert_on == "down":
            return down
        return max(up, down)


@dataclass(frozen=True)
class AlertState:
    alert_id: str
    started_at: int
    windows: int
    peak_score: float
    normal_streak: int = 0


@dataclass
class SliceState:
    detectors: dict[str, Any] = field(default_factory=dict)  # metric -> detector state
    cusums: dict[str, Cusum] = field(default_factory=dict)
    alerts: dict[str, AlertState] = field(default_factory=dict)  # metric -> open alert


def fingerprint(metric: str, slice_key: str) -> str:
    return hashlib.blake2b(f"{metric}|{slice_key}".encode(), digest_size=8).hexdigest()


def alert_id(fp: str, started_at: int) -> str:
    return hashlib.blake2b(f"{fp}|{started_at}".encode(), digest_size=16).hexdigest()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def observation(metric: CompiledMetric, acc: Acc, hour: int) -> Observation:
    def read(index: int, distinct: bool) -> float:
        return float(len(acc.distinct[index])) if distinct else acc.counts[index]

    x = read(metric.num, metric.num_distinct)
    if metric.kind == "ratio":
        assert metric.den is not None
        return Observation(x, read(metric.den, metric.den_distinct), hour=hour)
    if metric.sumsq is None:
        return Observation(x, sumsq=x, hour=hour)
    sumsq = acc.counts[metric.sumsq]
    if metric.kind == "mean":
        assert metric.n is not None
        return Observation(x, acc.counts[metric.n], sumsq, hour)
    return Observation(x, sumsq=sumsq, hour=hour)


def severity(verdict: Verdict, p: float) -> str:
    effect = abs(verdict.observed - verdict.expected) / max(abs(verdict.expected), 1e-9)
    if effect >= 0.5 and p <= 1e-8:
        return "critical"
    if effect >= 0.2:
        return "warning"
    return "info"


@dataclass
class Evaluator:
    catalog: Catalog
    settings: EngineSettings
    sources: tuple[str, ...]
    pending: dict[int, dict[str, Acc]] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    idle: set[str] = field(default_factory=set)
    slices: dict[str, SliceState] = field(default_factory=dict)
    evaluated_until: int | None = None

    def __post_init__(self) -> None:
        self._detectors = {m.name: detector_for(m.kind) for m in self.catalog.metrics}
        self._tz = ZoneInfo(self.settings.timezone)

    def add_partial(self, window_start: int, key: str, acc: Acc) -> None:
        window = self.pending.setdefault(window_start, {})
        mine = window.get(key)
        if mine is None:
            window[key] = Acc([*acc.counts], [set(s) for s in acc.distinct])
        else:
            mine.merge(acc)

    def advance(self, source: str, watermark: float) -> list[dict[str, Any]]:
        """Record a source's watermark; judge every window all sources have passed."""
        self.idle.discard(source)
        if watermark > self.marks.get(source, float("-inf")):
            self.marks[source] = watermark
        return self._judge_complete()

    def mark_idle(self, source: str) -> list[dict[str, Any]]:
        """A source partition has gone quiet (the caller's clock says so): stop waiting."""
        self.idle.add(source)
        return self._judge_complete()

    def _judge_complete(self) -> list[dict[str, Any]]:
        waiting = [s for s in self.sources if s not in self.idle]
        if any(s not in self.marks for s in waiting) or not self.marks:
            return []
        complete = min(self.marks[s] for s in waiting) if waiting else max(self.marks.values())
        alerts: list[dict[str, Any]] = []
        for start in sorted(self.pending):
            if start + self.settings.window_s > complete:
                break
            alerts.extend(self._judge(start, self.pending.pop(start)))
            self.evaluated_until = start + self.settings.window_s
        return alerts

    def flush(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        for start in sorted(self.pending):
            alerts.extend(self._judge(start, self.pending.pop(start)))
        return alerts

    def _judge(self, start: int, partials: Mapping[str, Acc]) -> Iterable[dict[str, Any]]:
        hour = datetime.fromtimestamp(start, self._tz).hour
        end = start + self.settings.window_s
        for key in sorted(partials):
            state = self.slices.setdefault(key, SliceState())
            acc = partials[key]
            for metric in self.catalog.metrics:
                alert = self._judge_metric(
                    state, key, metric, observation(metric, acc, hour), start
                )
                if alert is not None:
                    alert["window_end"] = iso(end)
                    yield alert

    def _judge_metric(
        self, state: SliceState, key: str, metric: CompiledMetric, obs: Observation, start: int
    ) -> dict[str, Any] | None:
        detector = self._detectors[metric.name]
        det_state = state.detectors.get(metric.name)
        if det_state is None:
            det_state = detector.init_state()
        verdict = detector.score(det_state, obs)  # type: ignore[arg-type]
        p = verdict.p_value(metric.alert_on)
        effect = abs(verdict.observed - verdict.expected) / max(abs(verdict.expected), 1e-9)
        delta = abs(verdict.observed - verdict.expected)
        h = self.settings.cusum_threshold
        cusum = state.cusums.get(metric.name, Cusum()).update(verdict, 1.25 * h)
        sustained = cusum.level(metric.alert_on) >= h and metric.alert_on in (
            verdict.direction(),
            "both",
        )
        if sustained:
            p = min(p, math.exp(-cusum.level(metric.alert_on)))
        big_enough = metric.kind != "count" or delta >= self.settings.min_count_delta
        anomalous = (
            not verdict.warming_up
            and verdict.n > 0
            and big_enough
            and (sustained or (p <= self.settings.alpha and effect >= self.settings.min_effect))
        )
        if not anomalous:
            state.detectors[metric.name] = detector.learn(det_state, obs)  # type: ignore[arg-type]
        open_alert = state.alerts.get(metric.name)
        score = verdict.score(metric.alert_on)
        end = start + self.settings.window_s
        fp = fingerprint(metric.name, key)
        if anomalous:
            if open_alert is None:
                open_alert = AlertState(alert_id(fp, start), start, 1, score)
            else:
                open_alert = AlertState(
                    open_alert.alert_id,
                    open_alert.started_at,
                    open_alert.windows + 1,
                    max(open_alert.peak_score, score),
                )
            state.alerts[metric.name] = open_alert
            state.cusums[metric.name] = cusum
            return self._alert(metric, key, fp, open_alert, verdict, p, start, "firing", None)
        if open_alert is None:
            state.cusums[metric.name] = cusum
            return None
        open_alert = replace(open_alert, normal_streak=open_alert.normal_streak + 1)
        if open_alert.normal_streak < self.settings.resolve_after:
            state.alerts[metric.name] = open_alert
            state.cusums[metric.name] = cusum
            return None
        del state.alerts[metric.name]
        state.cusums[metric.name] = Cusum()
        return self._alert(metric, key, fp, open_alert, verdict, p, start, "resolved", iso(end))

    def _alert(
        self,
        metric: CompiledMetric,
        key: str,
        fp: str,
        open_alert: AlertState,
        verdict: Verdict,
        p: float,
        start: int,
        status: str,
        resolved_at: str | None,
    ) -> dict[str, Any]:
        end = start + self.settings.window_s
        observed = verdict.observed if verdict.n > 0 else 0.0
        return {
            "id": open_alert.alert_id,
            "fingerprint": fp,
            "metric": metric.name,
            "slice": parse_slice_key(key),
            "window_start": iso(start),
            "window_end": iso(end),
            "direction": "up" if observed >= verdict.expected else "down",
            "observed": observed,
            "expected": verdict.expected,
            "expected_low": verdict.low,
            "expected_high": verdict.high,
            "n": verdict.n,
            "p_value": p,
            "score": verdict.score(metric.alert_on),
            "severity": severity(verdict, p),
            "status": status,
            "started_at": iso(open_alert.started_at),
            "updated_at": iso(end),
            "resolved_at": resolved_at,
            "windows": open_alert.windows,
            "baseline": self._detectors[metric.name].name,
            "config_version": self.catalog.version,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": {
                str(s): {k: a.to_json() for k, a in w.items()} for s, w in self.pending.items()
            },
            "marks": self.marks,
            "idle": sorted(self.idle),
            "evaluated_until": self.evaluated_until,
            "slices": {key: self.slice_snapshot(key) for key in self.slices},
        }

    def slice_snapshot(self, key: str) -> dict[str, Any]:
        state = self.slices[key]
        return {
            "detectors": {
                name: self._detectors[name].state_to_json(s) for name, s in state.detectors.items()
            },
            "alerts": {name: a.__dict__ for name, a in state.alerts.items()},
            "cusums": {name: [c.up, c.down] for name, c in state.cusums.items()},
        }

    def restore_slice(self, key: str, raw: Mapping[str, Any]) -> None:
        state = SliceState()
        for name, det in raw["detectors"].items():
            if name in self._detectors:
                state.detectors[name] = self._detectors[name].state_from_json(det)
        for name, a in raw["alerts"].items():
            state.alerts[name] = AlertState(**a)
        for name, (up, down) in raw["cusums"].items():
            state.cusums[name] = Cusum(tuple(up), tuple(down))
        self.slices[key] = state

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.pending = {
            int(s): {k: Acc.from_json(a) for k, a in w.items()} for s, w in snap["pending"].items()
        }
        self.marks = dict(snap["marks"])
        self.idle = set(snap["idle"])
        self.evaluated_until = snap["evaluated_until"]
        for key, raw in snap["slices"].items():
            self.restore_slice(key, raw)
