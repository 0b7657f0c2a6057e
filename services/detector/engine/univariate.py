"""A univariate detector for a plain series of numbers (one value per row).

For metrics that come without a denominator (a CPU reading, a latency, a
price) there is no count model to lean on. The detector judges each value by
its robust distance from the recent median (in units of the median absolute
deviation), then asks how unusual the last few distances are against the
distances seen over a longer stretch: the tail probability of that short-term
mean is the anomaly likelihood, after the fashion of HTM's. Scores are
``-log10`` of the tail probability over 10, so they keep their order far into
the tail. After a score above ``alarm`` the following ``cooldown`` rows score
zero: one detection per event, not one per row.

Same small interface as the window detectors: ``init_state``, ``score`` (pure)
and ``learn`` (returns the new state); the state round-trips through JSON.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .detectors import norm_cdf


@dataclass(frozen=True)
class SeriesState:
    values: tuple[float, ...] = ()
    distances: tuple[float, ...] = ()
    total: float = 0.0  # running sum of distances ...
    squares: float = 0.0  # ... and of their squares
    cooldown: int = 0


@dataclass(frozen=True)
class SeriesVerdict:
    distance: float
    score: float
    warming_up: bool


@dataclass(frozen=True)
class UnivariateDetector:
    recent: int = 120
    history: int = 600
    short: int = 12
    warmup: int = 150
    alarm: float = 0.6
    cooldown: int = 120

    def init_state(self) -> SeriesState:
        return SeriesState()

    def distance(self, state: SeriesState, value: float) -> float:
        if len(state.values) < 5:
            return 0.0
        med = statistics.median(state.values)
        mad = statistics.median(abs(v - med) for v in state.values)
        spread = 1.4826 * mad + 1e-3 * (abs(med) + 1.0)
        return min(abs(value - med) / spread, 1e3)

    def score(self, state: SeriesState, value: float) -> SeriesVerdict:
        d = self.distance(state, value)
        if len(state.distances) < self.warmup:
            return SeriesVerdict(d, 0.0, True)
        if state.cooldown > 0:
            return SeriesVerdict(d, 0.0, False)
        recent = [*state.distances[-(self.short - 1) :], d]
        mean_short = sum(recent) / len(recent)
        count = len(state.distances)
        mean_long = state.total / count
        sd_long = math.sqrt(max(state.squares / count - mean_long**2, 0.0)) + 1e-6
        z = (mean_short - mean_long) / (sd_long / math.sqrt(len(recent)))
        tail = max(1.0 - norm_cdf(z), 1e-300) if z < 8 else 0.5 * math.erfc(z / math.sqrt(2))
        score = min(1.0, -math.log10(max(tail, 1e-300)) / 10.0)
        return SeriesVerdict(d, score, False)

    def learn(self, state: SeriesState, value: float, verdict: SeriesVerdict) -> SeriesState:
        cooldown = max(0, state.cooldown - 1)
        if verdict.score >= self.alarm:
            cooldown = self.cooldown
        distances = (*state.distances, verdict.distance)
        total = state.total + verdict.distance
        squares = state.squares + verdict.distance**2
        if len(distances) > self.history:
            old = distances[0]
            distances = distances[1:]
            total -= old
            squares -= old * old
        return SeriesState(
            (*state.values, value)[-self.recent :], distances, total, squares, cooldown
        )
