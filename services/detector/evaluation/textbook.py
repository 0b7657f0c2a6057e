"""A textbook CUSUM, deliberately simple, to measure opswatch's delays against.

Per slice and metric (the catalog's ratios, counts and sums that need no user
history), on the engine's own windows:

- baseline: the same 5-minute window of each of the previous 7 days, pooled:
  a ratio's rate, sum of numerators / sum of denominators (denominators
  raised to their numerators where these outrun them, the rate kept
  0.5 / (denominators + 1) away from 0 and 1), a count's mean, sum / 7; a
  sum is judged by the count of what it adds up (paid orders for GMV), as
  the evidence is; a window whose baseline saw nothing adds nothing;
- fixed design shifts: ratios x0.5, x1.5 and x0.05 (to zero, nearly), counts
  x0.5, x2 and x0.05 (stops, nearly); only those in the metric's alert_on;
- per shift a one-sided CUSUM of the window's binomial (ratios) or Poisson
  (counts) log-likelihood ratio, S = max(0, S + llr), never reset;
- an alert while the largest S of a direction is above the threshold h: it
  starts at the window where S crosses h. h is one number for every slice,
  metric and shift, set from clean runs (``calibrate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.detector.engine.aggregate import Acc, ClosedWindow
from services.detector.engine.catalog import Catalog, CompiledMetric

DAYS = 7
DAY_S = 86400
RATIO_SHIFTS = (0.5, 1.5, 0.05)
COUNT_SHIFTS = (0.5, 2.0, 0.05)  # paired with RATIO_SHIFTS by direction
_P = 1e-6  # design rates stay inside (0, 1)


def watched(catalog: Catalog) -> tuple[CompiledMetric, ...]:
    return tuple(
        m for m in catalog.metrics if m.kind in ("ratio", "count", "sum") and not m.history_s
    )


def _read(acc: Acc, index: int, distinct: bool) -> float:
    return acc.distinct[index].count() if distinct else acc.counts[index]


@dataclass
class Textbook:
    """Windows in, CUSUM statistics out. ``series`` are (slice key, metric) pairs."""

    catalog: Catalog
    slices: Sequence[str]
    window_s: int = 300
    x: dict[int, np.ndarray] = field(default_factory=dict)  # window start -> per series
    n: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = watched(self.catalog)
        self.series = [(s, m.name) for s in self.slices for m in self.metrics]
        self._index = {s: i for i, s in enumerate(self.slices)}
        kinds = np.array([m.kind for _ in self.slices for m in self.metrics])
        self.ratio = kinds == "ratio"
        self.sum = kinds == "sum"
        ups = np.array([m.alert_on != "down" for _ in self.slices for m in self.metrics])
        downs = np.array([m.alert_on != "up" for _ in self.slices for m in self.metrics])
        self.allowed = {"up": ups, "down": downs}

    def add(self, window: ClosedWindow) -> None:
        k = len(self.metrics)
        x = np.zeros(len(self.series), np.float32)
        n = np.zeros(len(self.series), np.float32)
        for key, acc in window.partials.items():
            at = self._index.get(key)
            if at is None:
                continue
            for j, m in enumerate(self.metrics):
                x[at * k + j] = _read(acc, m.num, m.num_distinct)
                if m.kind == "ratio":
                    assert m.den is not None
                    n[at * k + j] = _read(acc, m.den, m.den_distinct)
                elif m.kind == "sum":
                    assert m.n is not None
                    n[at * k + j] = acc.counts[m.n]
        self.x[window.start] = x
        self.n[window.start] = n

    def values(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """A window's numerators (or counts) and denominators (a sum: the count of what
        it adds up), per series; zeros for a window not seen."""
        zero = np.zeros(len(self.series))
        return self.x.get(start, zero), self.n.get(start, zero)

    def llr(self, start: int) -> dict[str, np.ndarray]:
        """Per direction, each design shift's log-likelihood ratio for the window (rows)."""
        x, n = (v.astype(float) for v in self.values(start))
        past = [self.values(start - d * DAY_S) for d in range(1, DAYS + 1)]
        bx = np.sum([p[0] for p in past], axis=0, dtype=float)
        bn = np.sum([p[1] for p in past], axis=0, dtype=float)
        ratio = self.ratio
        n = np.where(ratio, np.maximum(n, x), n)  # a window's numerator can outrun its
        bn = np.where(ratio, np.maximum(bn, bx), bn)  # denominator (orders after sessions)
        edge = 0.5 / (bn + 1.0)
        p0 = np.clip(bx / np.maximum(bn, 1.0), edge, 1.0 - edge)
        count = np.where(self.sum, n, x)  # a sum: the Poisson count of what it adds up
        mean0 = np.where(self.sum, bn, bx) / DAYS
        known = np.where(ratio, bn, mean0) > 0  # no baseline, nothing to compare with
        out: dict[str, list[np.ndarray]] = {"up": [], "down": []}
        for rf, cf in zip(RATIO_SHIFTS, COUNT_SHIFTS, strict=True):
            p1 = np.clip(p0 * rf, _P, 1 - _P)
            q0 = np.clip(p0, _P, 1 - _P)
            binom = x * np.log(p1 / q0) + np.maximum(n - x, 0) * np.log((1 - p1) / (1 - q0))
            pois = count * np.log(cf) - (cf - 1.0) * mean0
            llr = np.where(ratio, binom, pois)
            out["up" if rf > 1 else "down"].append(np.where(known, llr, 0.0))
        return {d: np.array(v) for d, v in out.items()}

    def statistics(self, since: int, until: int) -> tuple[list[int], dict[str, np.ndarray]]:
        """The windows [since, until) and, per direction, the largest CUSUM over its shifts
        (rows: windows, columns: series; zero where the metric does not alert that way)."""
        starts = list(range(since, until, self.window_s))
        state = {d: np.zeros((len(v), len(self.series))) for d, v in self.llr(since).items()}
        paths: dict[str, list[np.ndarray]] = {d: [] for d in state}
        for start in starts:
            for d, llr in self.llr(start).items():
                state[d] = np.maximum(0.0, state[d] + llr)
                paths[d].append(np.where(self.allowed[d], state[d].max(axis=0), 0.0))
        return starts, {d: np.array(p) for d, p in paths.items()}


@dataclass(frozen=True)
class Episode:
    series: tuple[str, str]  # slice key, metric
    direction: str
    start: int  # the window where the statistic crossed h


def episodes(
    series: Sequence[tuple[str, str]], starts: Sequence[int], paths: dict[str, np.ndarray], h: float
) -> list[Episode]:
    """Alerts at threshold h: each crossing of h from below (or from the first window)."""
    out = []
    for d, path in paths.items():
        above = path > h
        began = above & ~np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
        for row, col in zip(*np.nonzero(began), strict=True):
            out.append(Episode(series[col], d, starts[row]))
    return sorted(out, key=lambda e: (e.start, e.series, e.direction))


def crossings(paths: Iterable[dict[str, np.ndarray]], h: float) -> int:
    total = 0
    for by_direction in paths:
        for path in by_direction.values():
            above = path > h
            total += int(above[0].sum()) + int((above[1:] & ~above[:-1]).sum())
    return total


def calibrate(clean: Sequence[dict[str, np.ndarray]], allowed: int) -> float:
    """The smallest threshold (a grid of 0.1 nats) with at most ``allowed`` alerts on the
    clean runs' statistics."""
    top = max((float(p.max()) for run in clean for p in run.values() if p.size), default=0.0)
    for h in np.arange(1.0, top + 0.1, 0.1):
        if crossings(clean, float(h)) <= allowed:
            return round(float(h), 1)
    return round(top + 0.1, 1)
