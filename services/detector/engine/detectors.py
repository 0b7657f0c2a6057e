"""Detectors: judge one closed window of one metric for one slice.

Every detector has the same small interface: ``init_state()``,
``score(state, obs) -> Verdict`` (pure) and ``learn(state, obs) -> state``
(returns a new state). States are frozen dataclasses that round-trip through
JSON; their profiles are arrays, which learning copies before it changes them
(new states share one array of zeros). Each fits a metric kind, so the test
knows the denominator:

- ratios: quasi-binomial. The variance of the count of successes is
  ``phi * n * p * (1 - p)`` with the over-dispersion ``phi`` estimated online,
  plus the uncertainty of the baseline rate itself, so 1 paid order in 50
  sessions against an expected 2% is unremarkable while the same drop over
  50,000 sessions is not. The expected rate follows the hour of the day
  (fewer visitors convert at night) at the recent level.
- counts and sums: a seasonal (hour-of-day in the business timezone) profile
  blended with the recent level, judged as compound quasi-Poisson (exact
  Poisson tails for small expectations).
- means: the window mean against the baseline mean with the window's own
  sample variance and the between-window variance, from 20 values up (the
  central limit theorem does not hold for the mean of three order amounts).
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Callable
from dataclasses import Field, dataclass, field, replace
from itertools import compress
from typing import Any, ClassVar, Generic, Protocol, TypeVar

SQRT2 = math.sqrt(2.0)
# The shifts the cumulative (CUSUM) statistics look for, as factors. A rate's are
# factors of its odds, from a fifth more to ten times (8% of ratings negative
# becoming 46%), and down to a twentieth: the rate stops. Each window adds its
# log-likelihood ratio however few observations it holds, so a slice that sees
# two ratings a window still adds up evidence, and the design nearest the true
# change adds it fastest.
RATIO_UP = (1.25, 1.5, 2.0, 4.0, 10.0)
RATIO_DOWN = (0.8, 0.5, 0.25, 0.05)
# A count's start at half and double: a seasonal profile off by less than about
# 40% adds no evidence to them on average, while a count that halves in a busy
# slice, a trickle that triples in a sparse one (one cancellation a window where
# one an hour is usual) and a count that stops all add up to an alarm
COUNT_UP = (2.0, 3.0, 5.0, 10.0)
COUNT_DOWN = (0.5, 0.25, 0.05)
# The shifts a metric event series' CUSUMs look for, in standard deviations of its residuals:
# a drift of one or two, a step of four, and a jump
SERIES_SHIFTS = (1.0, 2.0, 4.0, 10.0)
DESIGNS = max(len(RATIO_UP), len(RATIO_DOWN), len(COUNT_UP), len(COUNT_DOWN), len(SERIES_SHIFTS))
# A baseline learned from few events is uncertain, and its error is the same in
# every window a CUSUM adds up: the shifts are measured from the edge of the
# baseline's own uncertainty (this many relative standard errors), so that a
# sparse slice's baseline that is simply a little off cannot add up to an alarm
BASELINE_Z = 2.0


def uncertainty(events: float) -> float:
    """The factor a baseline learned from ``events`` events may be off by."""
    return 1.0 + BASELINE_Z / math.sqrt(max(events, 0.0) + 1.0)


def watched(llr: float, information: float, reach: float) -> float:
    """A design's evidence this window, or -inf (its CUSUM starts again) when a
    day of the slice's usual traffic under that shift would not add up to
    ``reach`` (``information``: the evidence a day would give): a 25% rise of a
    rate seen twice a day can never be told from noise, and a CUSUM that
    watches for it would only drain for days after a large incident."""
    return llr if information >= reach else -math.inf


def poisson_kl(mu: float, factor: float) -> float:
    """Evidence per window for a mean of ``mu * factor`` against ``mu``, when it is true."""
    return mu * (factor * math.log(factor) - factor + 1.0)


# Observations and verdicts are made afresh for every window of every (slice,
# metric) and never changed: plain slotted classes, which are made in a sixth of
# the time a frozen one takes (its fields set one by one through object.__setattr__)
@dataclass(slots=True)
class Observation:
    """One closed window of one metric in one slice.

    ``x`` is the numerator (ratio), the count or sum (count, sum) or the sum of
    values (mean); ``n`` the denominator (ratio) or number of values (sum, mean);
    ``sumsq`` the sum of squared values (mean); ``hour`` and ``weekday`` those
    of the window start in the business timezone; ``expect`` the factor a
    calendar entry scales the baseline by (a ratio's rate, a count's or sum's
    level, a mean's value) for this window.
    """

    x: float
    n: float = 1.0
    sumsq: float = 0.0
    hour: int = 0
    weekday: int = 0  # Monday 0, in the business timezone
    expect: float = 1.0

    @property
    def value(self) -> float:
        return self.x / self.n if self.n > 0 else math.nan


@dataclass(slots=True)
class Verdict:
    warming_up: bool
    observed: float
    expected: float
    low: float
    high: float
    p_up: float
    p_down: float
    n: float
    # log-likelihood ratios of each of the detector's design shifts against none
    llr_up: tuple[float, ...] = ()
    llr_down: tuple[float, ...] = ()

    def p_value(self, alert_on: str) -> float:
        if alert_on == "up":
            return self.p_up
        if alert_on == "down":
            return self.p_down
        return min(1.0, 2.0 * min(self.p_up, self.p_down))

    def direction(self) -> str:
        return "up" if self.observed >= self.expected else "down"

    def score(self, alert_on: str) -> float:
        """Evidence in [0, 1]: 0 during warm-up, else ``evidence`` of the p-value."""
        return 0.0 if self.warming_up else evidence(self.p_value(alert_on))


def evidence(p: float) -> float:
    """A p-value as a score in [0, 1]: 0 at p = 1, 1 at p <= 1e-10."""
    return min(1.0, max(0.0, -math.log10(max(p, 1e-300)) / 10.0))


def quiet(observed: float, expected: float, n: float, warming_up: bool) -> Verdict:
    return Verdict(warming_up, observed, expected, expected, expected, 1.0, 1.0, n)


def norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / SQRT2)


def poisson_tails(x: float, mu: float) -> tuple[float, float]:
    """(P[X >= x], P[X <= x]) for X ~ Poisson(mu), exact for small mu."""
    k = math.floor(x + 1e-9)
    if mu <= 0:
        return (1.0 if k <= 0 else 0.0), 1.0
    term = math.exp(-mu)
    cdf = 0.0
    for i in range(k + 1):
        if i:
            term *= mu / i
        cdf += term
        if i > mu and term < 1e-17:
            break
    below = min(1.0, cdf)
    pmf_k = math.exp(k * math.log(mu) - mu - math.lgamma(k + 1)) if k >= 0 else 0.0
    above = min(1.0, 1.0 - below + pmf_k)
    return max(above, 0.0), below


def count_tails(x: float, mean: float) -> tuple[float, float]:
    """(P[X >= x], P[X <= x]) for a count with this mean: Poisson, normal when large."""
    if mean > 400:
        sd = math.sqrt(mean)
        return 1.0 - norm_cdf((x - 0.5 - mean) / sd), norm_cdf((x + 0.5 - mean) / sd)
    return poisson_tails(x, mean)


def binomial_tails(x: float, n: float, p: float, phi: float) -> tuple[float, float]:
    """(P[up], P[down]) for x successes in n trials at rate p with dispersion phi.

    Normal with continuity correction when the variance is large; otherwise
    exact binomial tails on trials and successes deflated by the dispersion,
    so one complaint where 0.05 were expected is not called a five-sigma event.
    """
    var = phi * n * p * (1.0 - p)
    if var >= 25.0:
        sd = math.sqrt(var)
        mean = n * p
        return 1.0 - norm_cdf((x - 0.5 - mean) / sd), norm_cdf((x + 0.5 - mean) / sd)
    trials = max(1, round(n / phi))
    return exact_binomial_tails(min(trials, round(x / phi)), trials, p)


def exact_binomial_tails(k: int, n: int, p: float) -> tuple[float, float]:
    """(P[X >= k], P[X <= k]) for X ~ Binomial(n, p), summed from k outwards."""
    if p <= 0.0:
        return (1.0 if k <= 0 else 0.0), 1.0
    if p >= 1.0:
        return 1.0, (1.0 if k >= n else 0.0)
    log_pmf = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    pmf_k = math.exp(log_pmf)
    odds = p / (1.0 - p)
    mode = (n + 1) * p
    upper, term = pmf_k, pmf_k
    for i in range(k, n):
        term *= (n - i) / (i + 1) * odds
        upper += term
        if i > mode and term < 1e-17 * upper:
            break
    lower, term = pmf_k, pmf_k
    for i in range(k, 0, -1):
        term *= i / (n - i + 1) / odds
        lower += term
        if i < mode and term < 1e-17 * lower:
            break
    return min(1.0, upper), min(1.0, lower)


def odds_shift(p: float, factor: float) -> float:
    """The rate whose odds are ``factor`` times those of ``p``."""
    odds = p / (1.0 - p) * factor
    return odds / (1.0 + odds)


def poisson_llr(x: float, mu0: float, mu1: float) -> float:
    if mu0 <= 0 or mu1 <= 0:
        return 0.0
    return x * math.log(mu1 / mu0) - (mu1 - mu0)


S = TypeVar("S")


class Detector(Protocol[S]):
    name: ClassVar[str]

    def init_state(self) -> S: ...

    def score(self, state: S, obs: Observation) -> Verdict: ...

    def learn(self, state: S, obs: Observation) -> S: ...

    def learn_profile(self, state: S, obs: Observation) -> S: ...

    def state_to_json(self, state: S) -> dict[str, Any]: ...

    def state_from_json(self, raw: dict[str, Any]) -> S: ...


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, array) else value


def _like(spec: Field[Any] | None, value: list[Any]) -> Any:
    """A JSON array as the field it is read into holds it: an array of its type, the
    one that new states share when it is all zeros (as a new state's is until it
    learns), so that a restored stage takes no more memory than the one written."""
    if spec is None or not callable(spec.default_factory):
        return tuple(value)
    zeros = spec.default_factory()
    return zeros if value.count(0) == len(value) == len(zeros) else array(zeros.typecode, value)


class _JsonState(Generic[S]):
    state_cls: ClassVar[type[Any]]

    def state_to_json(self, state: S) -> dict[str, Any]:
        # flat: numbers and lists of numbers (JSON arrays), without asdict's deep copy,
        # which took most of a snapshot of thousands of slices
        return {name: _plain(getattr(state, name)) for name in state.__dataclass_fields__}  # type: ignore[attr-defined]

    def state_from_json(self, raw: dict[str, Any]) -> S:
        fields = self.state_cls.__dataclass_fields__
        values = {k: _like(fields.get(k), v) if isinstance(v, list) else v for k, v in raw.items()}
        return self.state_cls(**values)  # type: ignore[no-any-return]


HOURS = 24
DAYS = 7
POSITIVE = (0.0).__lt__  # x > 0, in C


def _zeros(typecode: str, n: int) -> Callable[[], array[Any]]:
    """New states' array of ``n`` zeros: one shared by all of them, as learning copies
    an array before it changes it (an array holds machine numbers, 8 bytes each,
    where a tuple of floats takes 32)."""
    shared = array(typecode, [0] * n)
    return lambda: shared


HOUR_ZEROS, HOUR_COUNTS = _zeros("d", HOURS), _zeros("q", HOURS)
DAY_ZEROS, DAY_COUNTS = _zeros("d", DAYS), _zeros("q", DAYS)


@functools.cache
def _decay(half_life: float) -> float:
    return float(0.5 ** (1.0 / half_life))


@dataclass(frozen=True, slots=True)
class RatioState:
    num: float = 0.0
    den: float = 0.0
    phi: float = 1.0
    windows: int = 0
    # the same over weeks: a sparse rate's prior (a complaint every few hours)
    long_num: float = 0.0
    long_den: float = 0.0
    # what the hour profile expected of the recent windows' denominators
    base: float = 0.0
    # per hour of the day, over weeks: the rate's daily rhythm (fewer buyers convert at night)
    hour_num: array[float] = field(default_factory=HOUR_ZEROS)
    hour_den: array[float] = field(default_factory=HOUR_ZEROS)
    # the hour being observed, not yet in the profile: its hour and outcomes
    hour: int = -1
    pending_num: float = 0.0
    pending_den: float = 0.0


@dataclass(frozen=True)
class RatioDetector(_JsonState[RatioState]):
    name: ClassVar[str] = "quasi-binomial"
    state_cls: ClassVar[type[Any]] = RatioState
    half_life: float = 72.0  # windows of the recent level (6 h at 5 min)
    long_half_life: float = 2016.0  # windows of the long memory (a week)
    prior_events: float = 10.0  # what the long memory weighs in the rate, in events
    day_windows: int = 288
    reach: float = 15.0  # evidence a design shift must be able to give in a day to be watched
    dispersion_half_life: float = 288.0
    warmup: int = 24
    band_z: float = 3.0

    def init_state(self) -> RatioState:
        return RatioState()

    def _trials(self, state: RatioState) -> float:
        """Trials behind the rate, for its uncertainty: the recent ones, and the
        long memory's worth ``prior_events`` events on top."""
        if state.long_num <= 0 or state.long_den <= 0:
            return state.den
        return state.den + min(state.long_den, self.prior_events * state.long_den / state.long_num)

    def _hour_rate(self, state: RatioState, hour: int) -> float:
        """The rate of the hour of the day over the weeks: the long rate, with
        ``prior_events`` of the rarer outcome, moved by the hour's own trials."""
        p = (state.long_num + 0.5) / (state.long_den + 1.0)
        prior = self.prior_events / max(min(p, 1.0 - p), 1e-6)
        return (state.hour_num[hour] + prior * p) / (state.hour_den[hour] + prior)

    def _behind(self, state: RatioState, hour: int) -> float:
        """About how many events of the rarer outcome the hour's rate rests on: its
        hour profile's and its recent level's (each with ``prior_events``), the
        two errors compounding."""
        hour_events = min(state.hour_num[hour], state.hour_den[hour] - state.hour_num[hour])
        recent = min(state.num, state.den - state.num)
        hour_events, recent = max(hour_events, 0.0), max(recent, 0.0)
        profile, level = hour_events + self.prior_events, recent + self.prior_events
        return profile * level / (profile + level)

    def _rate(self, state: RatioState, hour: int) -> float:
        """The hour's rate at the recent level: the recent windows' outcomes against
        what the hour profile expected of them, with ``prior_events`` of no change,
        on the side of the rarer outcome (within half and twice); a sparse slice's
        rate is its hour profile, a busy one's follows its last hours. Below 1 even
        where a window's numerator may exceed its denominator (cancellations of
        orders paid in earlier windows)."""
        if state.long_den <= 0:
            return min((state.num + 0.5) / (state.den + 1.0), 0.999)
        p = self._hour_rate(state, hour)
        seen, expected = state.num, state.base
        rare_fail = state.long_num > state.long_den / 2
        if rare_fail:
            p, seen, expected = 1.0 - p, state.den - state.num, state.den - state.base
        level = min(2.0, max(0.5, (seen + self.prior_events) / (expected + self.prior_events)))
        p = min(p * level, 0.999)
        return min(1.0 - p if rare_fail else p, 0.999)

    def score(self, state: RatioState, obs: Observation) -> Verdict:
        n = obs.n
        p = min(self._rate(state, obs.hour) * obs.expect, 0.999)
        if n <= 0:
            return quiet(math.nan, p, 0.0, state.windows < self.warmup)
        observed = obs.x / n
        if state.windows < self.warmup:
            return quiet(observed, p, n, True)
        q = p * (1.0 - p)
        phi = max(state.phi, 1.0) + n / max(self._trials(state), 1.0)
        p_up, p_down = binomial_tails(obs.x, n, p, phi)
        half = self.band_z * math.sqrt(phi * q / n)
        return Verdict(
            False,
            observed,
            p,
            max(0.0, p - half),
            min(1.0, p + half),
            p_up,
            p_down,
            n,
            *self._llrs(state, obs, p, phi, self._behind(state, obs.hour)),
        )

    def _llrs(
        self, state: RatioState, obs: Observation, p: float, phi: float, events: float
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The design shifts' evidence, from either edge of the baseline's
        uncertainty (the rarer outcome's ``events`` behind it)."""
        edge = uncertainty(events)
        usual = state.den * (1.0 - _decay(self.half_life)) * self.day_windows / phi
        x, reach = obs.x, self.reach
        # a window's numerator may exceed its denominator (cancellations of orders paid earlier)
        failures = max(obs.n - x, 0.0)

        def llrs(base: float, factors: tuple[float, ...]) -> tuple[float, ...]:
            """Per design, the rate ``shifted`` (``odds_shift``) against ``base``: the
            window's log-likelihood ratio, deflated by dispersion (0 for a rate not
            strictly between 0 and 1), ``watched`` by the evidence per trial when
            the shift is true (their Kullback-Leibler divergence), both from the
            same two logarithms."""
            out = []
            odds = base / (1.0 - base)
            for f in factors:
                shifted_odds = odds * f
                shifted = shifted_odds / (1.0 + shifted_odds)
                success = math.log(shifted / base)
                failure = math.log((1.0 - shifted) / (1.0 - base))
                inside = 0 < base < 1 and 0 < shifted < 1
                llr = (x * success + failures * failure) / phi if inside else 0.0
                kl = shifted * success + (1.0 - shifted) * failure
                out.append(watched(llr, usual * kl, reach))
            return tuple(out)

        return llrs(odds_shift(p, edge), RATIO_UP), llrs(odds_shift(p, 1.0 / edge), RATIO_DOWN)

    def learn(self, state: RatioState, obs: Observation) -> RatioState:
        return self._learn(state, obs, recent=True)

    def learn_profile(self, state: RatioState, obs: Observation) -> RatioState:
        """What a window kept out of the recent level (while evidence of a shift
        builds) still teaches: its hour of the profile and the long memory, both
        over weeks. An hour whose profile is off is held whenever it comes; were
        its windows never learned, it would be held again every day against the
        same wrong rate."""
        return self._learn(state, obs, recent=False)

    def _learn(self, state: RatioState, obs: Observation, recent: bool) -> RatioState:
        if obs.n <= 0:
            return state
        h = obs.hour
        phi = state.phi
        if recent and state.windows >= self.warmup // 2:
            p = self._rate(state, h)
            resid = (obs.x - obs.n * p) ** 2 / max(obs.n * p * (1.0 - p), 1e-9)
            d = _decay(self.dispersion_half_life)
            phi = d * phi + (1.0 - d) * min(resid, 100.0)
        d, d_long = _decay(self.half_life), _decay(self.long_half_life)
        expected = obs.n * self._hour_rate(state, h) if state.long_den > 0 else obs.x
        hour_num, hour_den = state.hour_num, state.hour_den  # copied before they change
        pending_num, pending_den = state.pending_num + obs.x, state.pending_den + obs.n
        if h != state.hour:  # the previous hour is over: into the profile with it
            if state.hour >= 0:
                hour_num, hour_den = hour_num[:], hour_den[:]
                d_hour = _decay(self.long_half_life / self.day_windows)  # once a day
                done = state.hour
                hour_num[done] = d_hour * hour_num[done] + state.pending_num
                hour_den[done] = d_hour * hour_den[done] + state.pending_den
            pending_num, pending_den = obs.x, obs.n
        if not recent:
            return replace(
                state,
                long_num=d_long * state.long_num + obs.x,
                long_den=d_long * state.long_den + obs.n,
                hour_num=hour_num,
                hour_den=hour_den,
                hour=h,
                pending_num=pending_num,
                pending_den=pending_den,
            )
        return RatioState(
            d * state.num + obs.x,
            d * state.den + obs.n,
            phi,
            state.windows + 1,
            d_long * state.long_num + obs.x,
            d_long * state.long_den + obs.n,
            d * state.base + expected,
            hour_num,
            hour_den,
            h,
            pending_num,
            pending_den,
        )


LEVEL_PRIOR = 10.0  # events of no change in the recent level
# an hour whose expected count per window, summed over the days behind it, is
# below this borrows from its neighbours (the sparser, the more)
SPARSE_HOUR = 2.0


@dataclass(frozen=True, slots=True)
class CountState:
    profile: array[float] = field(default_factory=HOUR_ZEROS)
    weight: array[float] = field(default_factory=HOUR_ZEROS)  # hours behind each hour's profile
    seen: float = 0.0  # recent observations, exponentially weighted ...
    base: float = 0.0  # ... and what the profile said of the same windows
    phi: float = 1.0
    sq: float = 0.0
    lin: float = 0.0
    windows: int = 0
    events: float = 0.0  # sums: the number of values in ``lin``
    # per weekday: observations and what the hour profile said of them, and the windows
    # behind both (those whose hour the profile had)
    day_seen: array[float] = field(default_factory=DAY_ZEROS)
    day_base: array[float] = field(default_factory=DAY_ZEROS)
    day_windows: array[int] = field(default_factory=DAY_COUNTS)
    # the hour being observed, not yet in the profile: its hour, sum and windows
    hour: int = -1
    hour_sum: float = 0.0
    hour_windows: int = 0

    def day_factor(self, weekday: int, min_windows: int) -> float:
        """How a weekday runs against the hour profile, relative to the other
        weekdays seen: 1 until at least two weekdays have ``min_windows`` each."""
        if self.day_windows[weekday] < min_windows or not self.day_base[weekday] > 0:
            return 1.0
        seen = [
            self.day_seen[d] / self.day_base[d]
            for d in range(DAYS)
            if self.day_windows[d] >= min_windows and self.day_base[d] > 0
        ]
        if len(seen) < 2:
            return 1.0
        mean = sum(seen) / len(seen)
        ratio = self.day_seen[weekday] / self.day_base[weekday]
        return min(4.0, max(0.25, ratio / mean)) if mean > 0 else 1.0

    def day_doubt(self, weekday: int, min_windows: int) -> float:
        """The factor a weekday not seen yet may run off by: it may run like any
        weekday seen, so its expectation is uncertain by the spread of their
        factors (``BASELINE_Z`` standard deviations of their logarithms); 1 for a
        weekday seen, or while fewer than two weekdays are."""
        logs = [
            math.log(self.day_seen[d] / self.day_base[d])
            for d in range(DAYS)
            if self.day_windows[d] >= min_windows and self.day_base[d] > 0 and self.day_seen[d] > 0
        ]
        if self.day_windows[weekday] >= min_windows or len(logs) < 2:
            return 1.0
        mean = sum(logs) / len(logs)
        return math.exp(BASELINE_Z * math.sqrt(sum((x - mean) ** 2 for x in logs) / len(logs)))

    @property
    def level(self) -> float:
        """The recent level against the profile: a ratio of sums, so the sparse
        night hours cannot swing it, with LEVEL_PRIOR events of no change added
        to both, so a sparse slice's handful of events cannot either; kept within
        [1/2, 2]."""
        if self.base <= 0:
            return 1.0
        # in the units of what is counted: for a sum, events at the mean value
        prior = LEVEL_PRIOR * (self.lin / self.events if self.events > 0 else 1.0)
        return min(2.0, max(0.5, (self.seen + prior) / (self.base + prior)))


def _sparseness(state: CountState, hour: int) -> float:
    """1 for an hour of the profile with no events behind it, down to 0 at SPARSE_HOUR."""
    if state.weight[hour] <= 0:
        return 1.0
    return max(0.0, 1.0 - state.profile[hour] * state.weight[hour] / SPARSE_HOUR)


@dataclass(frozen=True)
class CountDetector(_JsonState[CountState]):
    """Seasonal count or sum, judged as a compound Poisson variable.

    A sum of amounts has variance (expected count) x E[amount^2]; its ratio to
    the mean, ``scale``, is E[amount^2] / E[amount], learned from the windows'
    sums of squares (exactly 1 for plain counts). The test is quasi-Poisson
    on the sum divided by that scale, with extra dispersion ``phi`` >= 1
    learned online. A sparse hour's expectation has a floor at a fraction of
    the slice's daily mean, and every one at one event over all the windows
    seen, so an hour that happened to be empty so far does not make the first
    order of a small slice look impossible.

    A sum (``sums``) is only as surprising as the number of values behind it:
    its p-values are at least those of that number under Poisson, and its
    evidence for a shift at most that number's, so one large order in a slice
    that sees an order a day is not a GMV spike.

    The profile learns whole hours: an hour's windows join it once the hour
    is over, as a running mean of the days seen, then a moving one over
    ``profile_days``. An incident cannot teach the profile while it lasts, so a
    trickle of extra events keeps adding up in the CUSUM instead of becoming
    the new normal within the hour.
    """

    name: ClassVar[str] = "seasonal-quasi-poisson"
    state_cls: ClassVar[type[Any]] = CountState
    profile_days: float = 7.0
    level_half_life: float = 72.0
    dispersion_half_life: float = 288.0
    warmup: int = 288
    floor_share: float = 0.15
    band_z: float = 3.0
    sums: bool = False
    day_half_life: float = 576.0  # windows of one weekday: two weeks of 5-minute windows
    day_min_windows: int = 144  # half a day of 5-minute windows
    hour_windows: int = 12  # windows an hour
    reach: float = 15.0  # evidence a design shift must be able to give in a day to be watched

    def init_state(self) -> CountState:
        return CountState()

    def expected(self, state: CountState, hour: int, weekday: int = 0) -> float:
        return self._expected(state, hour, state.day_factor(weekday, self.day_min_windows))

    def _expected(self, state: CountState, hour: int, factor: float, floored: bool = True) -> float:
        """The seasonal profile (hour of day times the weekday's ``factor``) at the recent
        level; ``floored``, at least the floor a sparse hour gets against a false rise."""
        filled = list(compress(state.profile, map(POSITIVE, state.weight)))
        if not filled:
            return 0.0
        daily = sum(filled) / len(filled) * factor
        base = self._hour_base(state, hour) * factor if state.weight[hour] > 0 else daily
        if not floored:
            return base * state.level
        floor = self.floor_share * daily * _sparseness(state, hour)
        return max(base * state.level, floor, 1.0 / max(state.windows, 1))

    @staticmethod
    def _hour_base(state: CountState, hour: int) -> float:
        """The hour's profile, smoothed with its neighbours' as far as it is
        sparse: a sparse slice's few events in one hour of two days do not set
        its expectation alone, while a busy slice keeps its own hour (a sharp
        daily edge, a shop opening at eight, stays sharp)."""
        borrow = _sparseness(state, hour)
        total = weights = 0.0
        for offset, k in ((-1, borrow), (0, 2.0), (1, borrow)):
            h = (hour + offset) % HOURS
            w = k * state.weight[h]
            total += w * state.profile[h]
            weights += w
        return total / weights if weights > 0 else 0.0

    def _behind(self, state: CountState, hour: int) -> float:
        """About how many events (or how much of a sum) the hour's expectation
        rests on, its neighbours' included as far as it borrows from them."""
        borrow = _sparseness(state, hour)
        total = 0.0
        for offset, k in ((-1, borrow), (0, 2.0), (1, borrow)):
            h = (hour + offset) % HOURS
            total += k / 2.0 * state.profile[h] * state.weight[h]
        return total * self.hour_windows

    @staticmethod
    def _scale(state: CountState) -> float:
        return state.sq / state.lin if state.lin > 0 else 1.0

    def _warm(self, state: CountState, hour: int) -> bool:
        return state.windows >= self.warmup and state.weight[hour] > 0

    def score(self, state: CountState, obs: Observation) -> Verdict:
        factor = state.day_factor(obs.weekday, self.day_min_windows) * obs.expect
        mu = self._expected(state, obs.hour, factor)
        if not self._warm(state, obs.hour):
            return quiet(obs.x, mu, obs.x, True)
        scale = self._scale(state) * max(state.phi, 1.0)
        x, m = obs.x / scale, mu / scale
        p_up, p_down = count_tails(x, m)
        # evidence of shifts from the edges of the hour profile's uncertainty; a
        # drop is judged against the profile itself: the floor that keeps a sparse
        # hour's first order from looking impossible would make its usual silence
        # look like a drop
        per_value = state.lin / state.events if state.events > 0 and state.lin > 0 else 1.0
        edge = uncertainty(self._behind(state, obs.hour) / per_value) * state.day_doubt(
            obs.weekday, self.day_min_windows
        )
        m_down = self._expected(state, obs.hour, factor, floored=False) / scale
        # values expected: none seen lately makes a value as rare as a first order
        seen = state.events > 0 and state.lin > 0
        events = mu / per_value if seen else 1.0 / max(state.windows, 1)
        day = 24 * self.hour_windows

        def llrs(x: float, mean: float, factors: tuple[float, ...]) -> list[float]:
            return [
                watched(poisson_llr(x, mean, mean * f), day * poisson_kl(mean, f), self.reach)
                for f in factors
            ]

        llr_up, llr_down = llrs(x, m * edge, COUNT_UP), llrs(x, m_down / edge, COUNT_DOWN)
        if self.sums:
            e_up, e_down = count_tails(obs.n, events)
            p_up, p_down = max(p_up, e_up), max(p_down, e_down)
            # a sum's evidence is at most that of the number of values behind it
            llr_up = list(map(min, llr_up, llrs(obs.n, events * edge, COUNT_UP)))
            llr_down = list(map(min, llr_down, llrs(obs.n, events / edge, COUNT_DOWN)))
        half = self.band_z * math.sqrt(scale * mu)
        return Verdict(
            False,
            obs.x,
            mu,
            max(0.0, mu - half),
            mu + half,
            p_up,
            p_down,
            obs.x,
            tuple(llr_up),
            tuple(llr_down),
        )

    def learn(self, state: CountState, obs: Observation) -> CountState:
        return self._learn(state, obs, recent=True)

    def learn_profile(self, state: CountState, obs: Observation) -> CountState:
        """What a window kept out of the recent level (while evidence of a shift
        builds) still teaches: its hour of the profile, once the hour is over."""
        return self._learn(state, obs, recent=False)

    def _learn(self, state: CountState, obs: Observation, recent: bool) -> CountState:
        h, wd = obs.hour, obs.weekday
        factor = state.day_factor(wd, self.day_min_windows)
        mu = self._expected(state, h, factor)
        phi = state.phi
        level = state.level
        seen, base_sum = state.seen, state.base
        d_phi = _decay(self.dispersion_half_life)
        sq = d_phi * state.sq + obs.sumsq
        lin = d_phi * state.lin + obs.x
        events = d_phi * state.events + obs.n if self.sums else 0.0
        if state.weight[h] > 0 and mu > 0:
            scale = sq / lin if lin > 0 else 1.0
            phi = d_phi * phi + (1.0 - d_phi) * min((obs.x - mu) ** 2 / (mu * scale), 100.0)
        base = self._hour_base(state, h) * factor if state.weight[h] > 0 else 0.0
        if base > 0:
            d = _decay(self.level_half_life)
            seen, base_sum = d * seen + obs.x, d * base_sum + base
        # arrays copied before they change
        day_seen, day_base, day_windows = state.day_seen, state.day_base, state.day_windows
        if state.weight[h] > 0:  # a window the profile had an hour for: it tells of its day
            day_seen, day_base, day_windows = day_seen[:], day_base[:], day_windows[:]
            d_day = _decay(self.day_half_life)
            day_seen[wd] = d_day * day_seen[wd] + obs.x
            day_base[wd] = d_day * day_base[wd] + state.profile[h]
            day_windows[wd] += 1
        target = obs.x / (level * factor) if state.weight[h] > 0 else obs.x / factor
        profile, weight = state.profile, state.weight
        hour_sum, hour_windows = state.hour_sum + target, state.hour_windows + 1
        if h != state.hour:  # the previous hour is over: into the profile with it
            if state.hour >= 0:
                profile, weight = profile[:], weight[:]
                done = state.hour
                weight[done] += 1.0
                a = max(1.0 / weight[done], 1.0 / self.profile_days)
                profile[done] += a * (state.hour_sum / state.hour_windows - profile[done])
            hour_sum, hour_windows = target, 1
        if not recent:
            return replace(
                state,
                profile=profile,
                weight=weight,
                hour=h,
                hour_sum=hour_sum,
                hour_windows=hour_windows,
            )
        return CountState(
            profile,
            weight,
            seen,
            base_sum,
            phi,
            sq,
            lin,
            state.windows + 1,
            events,
            day_seen,
            day_base,
            day_windows,
            h,
            hour_sum,
            hour_windows,
        )


@dataclass(frozen=True, slots=True)
class MeanState:
    mean: float = 0.0
    weight: float = 0.0
    within_var: float = 0.0
    between_var: float = 0.0
    windows: int = 0


@dataclass(frozen=True)
class MeanDetector(_JsonState[MeanState]):
    name: ClassVar[str] = "mean-with-variance"
    state_cls: ClassVar[type[Any]] = MeanState
    half_life: float = 72.0
    warmup: int = 24
    min_n: int = 20
    band_z: float = 3.0

    def init_state(self) -> MeanState:
        return MeanState()

    @staticmethod
    def _sample_var(obs: Observation) -> float | None:
        if obs.n < 2:
            return None
        m = obs.x / obs.n
        return max(0.0, (obs.sumsq - obs.n * m * m) / (obs.n - 1))

    def score(self, state: MeanState, obs: Observation) -> Verdict:
        if obs.n <= 0:
            return quiet(math.nan, state.mean * obs.expect, 0.0, state.windows < self.warmup)
        m, mean = obs.x / obs.n, state.mean * obs.expect
        if state.windows < self.warmup:
            return quiet(m, mean, obs.n, True)
        if obs.n < self.min_n:
            return quiet(m, mean, obs.n, False)
        s2 = self._sample_var(obs)
        within = state.within_var if s2 is None else 0.5 * (s2 + state.within_var)
        var = within / obs.n + state.between_var + within / max(state.weight, 1.0)
        sd = math.sqrt(max(var, 1e-12))
        z = (m - mean) / sd
        half = self.band_z * sd
        return Verdict(
            False,
            m,
            mean,
            mean - half,
            mean + half,
            1 - norm_cdf(z),
            norm_cdf(z),
            obs.n,
        )

    def learn_profile(self, state: MeanState, obs: Observation) -> MeanState:
        """A mean has no profile: a window kept out of its level teaches nothing."""
        return state

    def learn(self, state: MeanState, obs: Observation) -> MeanState:
        if obs.n <= 0:
            return state
        m = obs.x / obs.n
        d = _decay(self.half_life)
        s2 = self._sample_var(obs)
        if state.weight <= 0:
            return MeanState(m, obs.n, s2 or 0.0, 0.0, 1)
        weight = d * state.weight + obs.n
        mean = state.mean + (m - state.mean) * obs.n / weight
        within = state.within_var if s2 is None else d * state.within_var + (1 - d) * s2
        excess = (m - state.mean) ** 2 - within / obs.n
        between = d * state.between_var + (1 - d) * max(0.0, excess)
        return MeanState(mean, weight, within, between, state.windows + 1)


# A Laplace residual's band with the coverage of a normal one's 3 standard
# deviations (99.73%), in scales: P[|R| > c b] = exp(-c)
LAPLACE_BAND = -math.log(1.0 - 0.9973)


def laplace_tails(u: float) -> tuple[float, float]:
    """(P[R >= u b], P[R <= u b]) for a Laplace residual R of scale b."""
    if u >= 0.0:
        up = 0.5 * math.exp(-u)
        return up, 1.0 - up
    down = 0.5 * math.exp(u)
    return 1.0 - down, down


AGAIN = DAYS + 1


@dataclass(frozen=True, slots=True)
class LevelState:
    level: float = 0.0  # the recent level, while the hour profile lacks the hour
    level_weight: float = 0.0  # windows behind it, exponentially weighted
    delta: float = 0.0  # how the recent windows ran against the hour profile
    delta_weight: float = 0.0  # windows behind it
    scale: float = 0.0  # mean absolute residual, exponentially weighted
    scale_weight: float = 0.0  # windows behind it
    # per hour of the day: its value over days
    profile: array[float] = field(default_factory=HOUR_ZEROS)
    weight: array[float] = field(default_factory=HOUR_ZEROS)  # windows behind each hour's value
    # per hour of the day: the weekday (+1) it was first learned on, AGAIN once
    # learned on another day too (0: never): the profile has the hour from its second day
    days: array[int] = field(default_factory=HOUR_COUNTS)
    # per hour of the day: the mean absolute residual of its windows, and windows behind it
    hour_scale: array[float] = field(default_factory=HOUR_ZEROS)
    hour_scale_weight: array[float] = field(default_factory=HOUR_ZEROS)
    # the last residual, and the exponentially weighted sums that give the
    # residuals' lag-one autocorrelation (a queue or a stock level runs on from
    # where it was: its residuals come in runs)
    last_resid: float = 0.0
    lag_product: float = 0.0
    lag_square: float = 0.0
    # the last window's value, and the smallest change between two windows seen (0:
    # none yet): the series' resolution, below which no spread is believed (a count
    # of errors at 0 for days moves by whole errors, not by the 0 it has wandered)
    last_value: float = 0.0
    step: float = 0.0


@dataclass(frozen=True)
class LevelDetector(_JsonState[LevelState]):
    """A metric event series: any number, its range and scale not known beforehand.

    The expected value is the hour of the day's value over the days (a delivery
    time longer at dinner, a stock level refilled every morning) moved by how
    the recent windows ran against it (exponentially weighted): the recent
    level, then, when the series has no daily rhythm. The residuals' scale is
    their exponentially weighted mean absolute value, a residual beyond
    ``clip`` scales counting as ``clip`` (one outlier does not blow it up), and
    at least ``floor`` of the expected value (a series flat so far does not
    alarm at its first wobble) and the series' resolution (``step``); it is
    the hour of the day's own, shrunk towards the whole day's (``_scale``),
    and that of one sample when a window averages
    several (``averaged``). All of it is learned from the windows as they
    come: no range given in advance, no look ahead. The residuals are taken
    for Laplace (double exponential), whose scale is their mean absolute
    value: tails heavier than a normal's, as those of a number from another
    system are (a delivery time is skewed, a queue jumps), so one stray window
    is not an alarm. p-values are its tails of the residual over the scale,
    widened by the recent level's own uncertainty; the band is ``band`` scales
    (a normal band's coverage); the CUSUMs add the Gaussian log-likelihood
    ratios of shifts of ``SERIES_SHIFTS`` standard deviations either way, times
    the share of independent windows the residuals' autocorrelation leaves
    (``_run_factor``). Warming up until
    the hour of the day was seen on an earlier day and the scale rests on
    ``warmup`` windows judged against the profile, and until it has changed
    once. The state is a fixed 131 numbers whatever the series.
    """

    name: ClassVar[str] = "seasonal-level"
    state_cls: ClassVar[type[Any]] = LevelState
    level_half_life: float = 24.0  # windows (two hours at 5 min)
    scale_half_life: float = 288.0  # windows (a day at 5 min)
    profile_days: float = 7.0
    hour_windows: int = 12
    warmup: int = 24
    clip: float = 4.0
    floor: float = 0.01
    band: float = LAPLACE_BAND
    # the window's value is the mean of its samples: its residual shrinks with
    # their number (one delivery time at night against the mean of fifty at noon)
    averaged: bool = False

    def init_state(self) -> LevelState:
        return LevelState()

    @staticmethod
    def _profiled(state: LevelState, hour: int, weekday: int) -> bool:
        """Whether the profile has the hour from an earlier day than ``weekday``."""
        return state.days[hour] not in (0, weekday + 1)

    def expected(self, state: LevelState, hour: int, weekday: int) -> float:
        if self._profiled(state, hour, weekday):
            return state.profile[hour] + state.delta
        return state.level

    def _scale(self, state: LevelState, hour: int) -> float:
        """The residuals' mean absolute value at this hour of the day: the hour's
        own, from the windows it was learned on, shrunk towards the day's (a
        delivery time from one delivery at night wanders more than the mean of
        fifty at noon)."""
        w = state.hour_scale_weight[hour]
        k = self.hour_windows
        return (w * state.hour_scale[hour] + k * state.scale) / (w + k)

    def _root(self, obs: Observation) -> float:
        """How many times smaller the window's residual is than one sample's: the
        square root of the number of samples it averages, 1 for other summaries."""
        return math.sqrt(obs.n) if self.averaged and obs.n > 0 else 1.0

    def _least(self, state: LevelState, mu: float) -> float:
        """The least a window's scale can be: ``floor`` of the expected value, and the
        series' resolution."""
        return max(self.floor * abs(mu), state.step, 1e-9)

    def _spread(self, state: LevelState, mu: float, obs: Observation) -> float:
        """The window's residuals' Laplace scale, the recent level's uncertainty added."""
        b = max(self._scale(state, obs.hour) / self._root(obs), self._least(state, mu))
        return b * math.sqrt(1.0 + 1.0 / max(state.delta_weight, 1.0))

    @staticmethod
    def _run_factor(state: LevelState) -> float:
        """How much less evidence a window adds when residuals come in runs: with
        lag-one autocorrelation r, (1 - r) / (1 + r) (the effective share of
        independent windows), so that a queue that stays long for an hour, as
        queues do, does not add up to an alarm as twelve independent windows
        would."""
        if state.lag_square <= 0.0:
            return 1.0
        r = min(max(state.lag_product / state.lag_square, 0.0), 0.95)
        return (1.0 - r) / (1.0 + r)

    def score(self, state: LevelState, obs: Observation) -> Verdict:
        mu = self.expected(state, obs.hour, obs.weekday) * obs.expect
        x = obs.x
        # a series that never changed has shown no spread to judge a change against
        warm = state.scale_weight >= self.warmup and state.step > 0
        if not warm or not self._profiled(state, obs.hour, obs.weekday):
            return quiet(x, mu, obs.n, True)
        b = self._spread(state, mu, obs)
        u = (x - mu) / b
        p_up, p_down = laplace_tails(u)
        z = u / math.sqrt(2.0)  # in standard deviations
        half = self.band * b
        runs = self._run_factor(state)
        return Verdict(
            False,
            x,
            mu,
            mu - half,
            mu + half,
            p_up,
            p_down,
            obs.n,
            tuple(runs * (k * z - k * k / 2.0) for k in SERIES_SHIFTS),
            tuple(runs * (-k * z - k * k / 2.0) for k in SERIES_SHIFTS),
        )

    def learn(self, state: LevelState, obs: Observation) -> LevelState:
        return self._learn(state, obs, recent=True)

    def learn_profile(self, state: LevelState, obs: Observation) -> LevelState:
        """What a window kept out of the recent level (while evidence of a shift
        builds) still teaches: its hour's value, over days."""
        return self._learn(state, obs, recent=False)

    def _learn(self, state: LevelState, obs: Observation, recent: bool) -> LevelState:
        h, x = obs.hour, obs.x
        if obs.n <= 0 or not math.isfinite(x):
            return state
        profile, weight, days = state.profile[:], state.weight[:], state.days[:]
        a = max(1.0 / (weight[h] + 1.0), 1.0 / (self.profile_days * self.hour_windows))
        profile[h] += a * (x - profile[h])
        weight[h] += 1.0
        days[h] = obs.weekday + 1 if days[h] == 0 else days[h]
        days[h] = AGAIN if days[h] != obs.weekday + 1 else days[h]
        change = abs(x - state.last_value) if state.level_weight > 0 else 0.0
        step = min(state.step or change, change or state.step)
        if not recent:
            return replace(
                state,
                profile=profile,
                weight=weight,
                days=days,
                last_value=x,
                step=step,
            )
        d = _decay(self.level_half_life)
        level_weight = d * state.level_weight + 1.0
        level = state.level + (x - state.level) / level_weight
        delta, delta_weight = state.delta, state.delta_weight
        scale, scale_weight = state.scale, state.scale_weight
        hour_scale, hour_scale_weight = state.hour_scale[:], state.hour_scale_weight[:]
        last_resid, lag_product, lag_square = state.last_resid, state.lag_product, state.lag_square
        if self._profiled(state, h, obs.weekday):
            mu = self.expected(state, h, obs.weekday)
            # one sample's worth of residual: the scales are those of a sample
            root = self._root(obs)
            signed = (x - mu) * root
            if scale_weight > 0:
                bound = self.clip * max(self._scale(state, h), self._least(state, mu) * root)
                signed = min(max(signed, -bound), bound)
            d_s = _decay(self.scale_half_life)
            scale_weight = d_s * scale_weight + 1.0
            scale += (abs(signed) - scale) / scale_weight
            hour_scale_weight[h] += 1.0
            b = max(1.0 / hour_scale_weight[h], 1.0 / (self.profile_days * self.hour_windows))
            hour_scale[h] += b * (abs(signed) - hour_scale[h])
            lag_product = d_s * lag_product + signed * last_resid
            lag_square = d_s * lag_square + last_resid * last_resid
            last_resid = signed
            delta_weight = d * delta_weight + 1.0
            delta += (x - state.profile[h] - delta) / delta_weight
        return LevelState(
            level,
            level_weight,
            delta,
            delta_weight,
            scale,
            scale_weight,
            profile,
            weight,
            days,
            hour_scale,
            hour_scale_weight,
            last_resid,
            lag_product,
            lag_square,
            x,
            step,
        )


def detector_for(
    kind: str, window_s: int = 300, reach: float = 15.0, summary: str = "last"
) -> Detector[Any]:
    """The detector of a metric kind; ``reach``: the CUSUMs' threshold; ``summary``:
    how a window sums up a metric event series."""
    if kind == "ratio":
        return RatioDetector(day_windows=86400 // window_s, reach=reach)
    if kind == "count":
        return CountDetector(hour_windows=3600 // window_s, reach=reach)
    if kind == "sum":
        return CountDetector(sums=True, hour_windows=3600 // window_s, reach=reach)
    if kind == "mean":
        return MeanDetector()
    if kind == "series":
        return LevelDetector(hour_windows=3600 // window_s, averaged=summary == "mean")
    raise ValueError(f"no detector for metric kind {kind!r}")
