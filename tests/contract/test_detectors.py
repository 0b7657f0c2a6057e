"""One battery every registered detector passes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from services.detector.engine.detectors import (
    CountDetector,
    LevelDetector,
    MeanDetector,
    Observation,
    RatioDetector,
    detector_for,
)

Stream = Callable[[np.random.Generator, int, float], Observation]


def ratio_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    n = 2000
    return Observation(float(rng.binomial(n, 0.05 * level)), n, hour=(i // 12) % 24)


def count_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    x = float(rng.poisson(200 * level))
    return Observation(x, sumsq=x, hour=(i // 12) % 24)


def sum_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    amounts = rng.lognormal(3.8, 0.6, size=int(rng.poisson(150 * level)))
    return Observation(
        float(amounts.sum()), len(amounts), float((amounts**2).sum()), (i // 12) % 24
    )


def mean_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    values = rng.normal(40 * level, 8, size=60)
    return Observation(float(values.sum()), 60, float((values**2).sum()), (i // 12) % 24)


def level_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    """The mean of five samples of a series with a daily rhythm (a delivery time)."""
    hour, weekday = (i // 12) % 24, (i // 288) % 7
    values = rng.normal(40 * level + 5 * math.sin(hour / 24 * 2 * math.pi), 2, size=5)
    return Observation(float(values.mean()), 5, hour=hour, weekday=weekday)


CASES = [
    pytest.param(RatioDetector(), ratio_obs, "down", id="ratio"),
    pytest.param(CountDetector(warmup=48), count_obs, "both", id="count"),
    pytest.param(CountDetector(warmup=48, sums=True), sum_obs, "both", id="sum"),
    pytest.param(MeanDetector(), mean_obs, "both", id="mean"),
    pytest.param(LevelDetector(), level_obs, "both", id="series"),
]


def learned(detector: Any, stream: Stream, windows: int, seed: int = 42) -> Any:
    rng = np.random.default_rng(seed)
    state = detector.init_state()
    for i in range(windows):
        state = detector.learn(state, stream(rng, i, 1.0))
    return state


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_score_is_within_unit_interval(detector: Any, stream: Stream, alert_on: str) -> None:
    state = learned(detector, stream, 600)
    rng = np.random.default_rng(1)
    for i, level in enumerate((0.0, 0.5, 1.0, 1.5, 3.0)):
        verdict = detector.score(state, stream(rng, 600 + i, level))
        assert 0.0 <= verdict.score(alert_on) <= 1.0


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_learn_returns_new_state_and_leaves_input_alone(
    detector: Any, stream: Stream, alert_on: str
) -> None:
    state = learned(detector, stream, 50)
    before = json.dumps(detector.state_to_json(state))
    after = detector.learn(state, stream(np.random.default_rng(3), 50, 1.0))
    assert json.dumps(detector.state_to_json(state)) == before
    assert after != state


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_state_round_trips_through_json(detector: Any, stream: Stream, alert_on: str) -> None:
    state = learned(detector, stream, 400)
    raw = json.loads(json.dumps(detector.state_to_json(state)))
    assert detector.state_from_json(raw) == state


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_deterministic_under_a_seed(detector: Any, stream: Stream, alert_on: str) -> None:
    assert learned(detector, stream, 300, seed=5) == learned(detector, stream, 300, seed=5)


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_quiet_on_a_steady_stream(detector: Any, stream: Stream, alert_on: str) -> None:
    rng = np.random.default_rng(11)
    state = detector.init_state()
    smallest = 1.0
    for i in range(1200):
        obs = stream(rng, i, 1.0)
        verdict = detector.score(state, obs)
        if not verdict.warming_up:
            smallest = min(smallest, verdict.p_value(alert_on))
        state = detector.learn(state, obs)
    assert smallest > 1e-6


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_catches_a_step_change_at_once(detector: Any, stream: Stream, alert_on: str) -> None:
    state = learned(detector, stream, 600)
    rng = np.random.default_rng(9)
    level = 0.4 if alert_on in ("down", "both") else 1.6
    verdict = detector.score(state, stream(rng, 600, level))
    assert verdict.p_value(alert_on) < 1e-6


@pytest.mark.parametrize(("detector", "stream", "alert_on"), CASES)
def test_zero_score_while_warming_up(detector: Any, stream: Stream, alert_on: str) -> None:
    rng = np.random.default_rng(2)
    state = detector.init_state()
    verdict = detector.score(state, stream(rng, 0, 0.0))
    assert verdict.warming_up
    assert verdict.score(alert_on) == 0.0


def test_ratio_knows_the_denominator() -> None:
    """A 2% -> 1% drop is noise on 50 sessions and an outage on 50,000."""
    detector = RatioDetector()
    state = detector.init_state()
    for _ in range(100):
        state = detector.learn(state, Observation(20.0, 1000.0))
    small = detector.score(state, Observation(0.5 * 0.02 * 50, 50.0))
    large = detector.score(state, Observation(0.01 * 50_000, 50_000.0))
    assert small.p_down > 0.05
    assert large.p_down < 1e-12


def test_one_large_order_in_a_quiet_slice_is_not_a_gmv_spike() -> None:
    """A slice that sees an order every few hours: one big order is ordinary."""
    detector = CountDetector(warmup=48, sums=True)
    rng = np.random.default_rng(4)
    state = detector.init_state()
    for i in range(600):
        amounts = rng.lognormal(3.8, 0.6, size=int(rng.poisson(0.02)))
        obs = Observation(float(amounts.sum()), len(amounts), float((amounts**2).sum()), i % 24)
        state = detector.learn(state, obs)
    big = detector.score(state, Observation(400.0, 1, 400.0**2, 5))
    assert big.p_up > 1e-3
    many = detector.score(state, Observation(10 * 60.0, 10, 10 * 60.0**2, 5))
    assert many.p_up < 1e-6


def weekly_obs(rng: np.random.Generator, i: int, level: float) -> Observation:
    """Windows of five minutes; weekends (days 5, 6) see half the weekday traffic."""
    hour, weekday = (i // 12) % 24, (i // 288) % 7
    mean = 100 * (1.5 + math.sin(hour / 24 * 2 * math.pi)) * (0.5 if weekday >= 5 else 1.0)
    x = float(rng.poisson(mean * level))
    return Observation(x, sumsq=x, hour=hour, weekday=weekday)


@pytest.mark.parametrize(("days", "quiet"), [(1000, False), (144, True)])
def test_counts_know_the_day_of_the_week(days: int, quiet: bool) -> None:
    """Saturday's first hours are normal at half Friday's traffic, once weekdays are known."""
    detector = CountDetector(day_min_windows=days)
    rng = np.random.default_rng(8)
    state = detector.init_state()
    for i in range(288 * 26):  # three weeks and five days: up to the end of a Friday
        state = detector.learn(state, weekly_obs(rng, i, 1.0))
    smallest = 1.0
    for i in range(288 * 26, 288 * 26 + 24):  # Saturday, 00:00 to 02:00
        obs = weekly_obs(rng, i, 1.0)
        smallest = min(smallest, detector.score(state, obs).p_down)
        state = detector.learn(state, obs)
    assert (smallest > 1e-6) is quiet


def test_a_sparse_count_that_climbs_is_caught_by_the_evidence_of_many_windows() -> None:
    from services.detector.engine.evaluate import Cusum, EngineSettings

    h = EngineSettings().cusum_threshold(14)
    detector = CountDetector()
    rng = np.random.default_rng(7)
    state, cusum = detector.init_state(), Cusum()

    def window(i: int, mean: float) -> tuple[float, float]:
        nonlocal state, cusum
        x = float(rng.poisson(mean))
        obs = Observation(x, sumsq=x, hour=(i // 12) % 24)
        verdict = detector.score(state, obs)
        cusum = cusum.update(verdict, h)
        if cusum.level("up") < h / 4:  # as stage two: the baseline holds while evidence builds
            state = detector.learn(state, obs)
        return obs.x, cusum.level("up")

    # three days of a cancellation every hour or so: never an alarm
    assert max(window(i, 0.1)[1] for i in range(3 * 288)) < h
    # then one every five minutes, a rise few single windows show with any
    # confidence: the evidence of the windows together crosses the threshold
    # within three hours (the hour's baseline rests on a handful of events, so
    # the shift is measured from the edge of its uncertainty)
    climb = [window(i, 1.0) for i in range(3 * 288, 3 * 288 + 36)]
    assert any(level >= h for _, level in climb)


def test_a_busy_slice_keeps_a_sharp_daily_edge() -> None:
    """A shop that opens at eight: 4 orders a window before, 200 after."""
    detector = CountDetector()
    rng = np.random.default_rng(3)
    state = detector.init_state()

    def level(hour: int) -> float:
        return 200.0 if 8 <= hour < 20 else 4.0

    for i in range(3 * 288):
        hour = (i // 12) % 24
        x = float(rng.poisson(level(hour)))
        state = detector.learn(state, Observation(x, sumsq=x, hour=hour))
    for hour in (7, 8, 19, 20):
        assert detector.expected(state, hour) == pytest.approx(level(hour), rel=0.25)


def cusum_levels(observations: Iterable[Observation], side: str) -> list[float]:
    """A ratio's CUSUM level on ``side`` after each window, learning as stage two does
    (not while the evidence is past a quarter of the threshold)."""
    from services.detector.engine.evaluate import Cusum, EngineSettings

    h = EngineSettings().cusum_threshold(14)
    detector = RatioDetector()
    state, cusum, levels = detector.init_state(), Cusum(), []
    for obs in observations:
        cusum = cusum.update(detector.score(state, obs), h)
        levels.append(cusum.level(side))
        if cusum.level(side) < h / 4:
            state = detector.learn(state, obs)
    return levels


def sparse_ratio_run(rates: list[float], per_window: float, seed: int) -> list[float]:
    """A ratio of a couple of observations a window (ratings on one platform): the
    CUSUM's level on the upper side after each window."""
    rng = np.random.default_rng(seed)

    def windows() -> Iterator[Observation]:
        for rate in rates:
            n = float(rng.poisson(per_window))
            yield Observation(float(rng.binomial(int(n), rate)), n)

    return cusum_levels(windows(), "up")


def test_a_sparse_ratio_adds_up_the_evidence_of_windows_too_small_to_judge() -> None:
    """8% of ratings negative, 1.7 ratings a window; then 60% for three hours
    (about 35 nats of evidence): the CUSUM crosses within the incident, though
    no single window of one or two ratings could say anything."""
    from services.detector.engine.evaluate import EngineSettings

    h = EngineSettings().cusum_threshold(14)
    normal = [0.08] * (288 * 3)
    for seed in range(5):
        levels = sparse_ratio_run(normal + [0.6] * 36, 1.7, seed)
        assert max(levels[: len(normal)]) < h  # three quiet days: no alarm
        assert max(levels[len(normal) :]) >= h


def test_a_ratio_whose_numerator_outruns_its_denominator_is_judged() -> None:
    """Cancellations of orders paid in earlier windows: more cancelled than paid."""
    detector = RatioDetector()
    state = detector.init_state()
    for _ in range(48):
        state = detector.learn(state, Observation(3.0, 2.0))
    verdict = detector.score(state, Observation(5.0, 1.0))
    assert all(math.isfinite(x) or x == -math.inf for x in verdict.llr_up + verdict.llr_down)
    assert 0.0 <= verdict.p_up <= 1.0


def rhythm_run(days: int, drop_from: int | None, seed: int) -> list[float]:
    """Conversion 6% by day and 2% at night, traffic four times higher by day (a
    shop's usual rhythm), and a fall to a quarter from window ``drop_from``: the
    CUSUM's level on the lower side after each window."""
    rng = np.random.default_rng(seed)

    def windows() -> Iterator[Observation]:
        for i in range(288 * days):
            hour = (i // 12) % 24
            day = 8 <= hour < 22
            fall = 0.25 if drop_from is not None and i >= drop_from else 1.0
            n = float(rng.poisson(400 if day else 100))
            rate = (0.06 if day else 0.02) * fall
            yield Observation(float(rng.binomial(int(n), rate)), n, hour=hour)

    return cusum_levels(windows(), "down")


def test_a_rate_with_a_daily_rhythm_is_judged_against_its_hour() -> None:
    """Every night's rate is a third of the day's: expected, not a drop, while the
    night's rate falling to a quarter is one, found within three hours (30 nats)."""
    from services.detector.engine.evaluate import EngineSettings

    h = EngineSettings().cusum_threshold(14)
    night = 288 * 7 + 12 * 23  # the eighth day, 23:00
    for seed in range(3):
        assert max(rhythm_run(9, None, seed)[288:]) < h  # from the second day
        assert max(rhythm_run(9, night, seed)[night : night + 36]) >= h


def test_one_quiet_window_does_not_set_its_weekday() -> None:
    """The stream starts on a Monday, so the first Monday teaches the profile its
    hours and nothing of Mondays. On the second Monday, a first window without
    orders does not make the day's expectation a quarter of its hours'."""
    detector = CountDetector()
    rng = np.random.default_rng(0)
    state = detector.init_state()
    expected = []
    for i in range(288 * 7 + 3):
        hour, weekday = (i // 12) % 24, (i // 288) % 7
        mean = 4 * (1.5 + math.sin((hour - 10) / 24 * 2 * math.pi)) * (0.8 if weekday >= 5 else 1)
        x = float(rng.poisson(mean)) if i != 288 * 7 else 0.0  # the second Monday's first
        obs = Observation(x, sumsq=x, hour=hour, weekday=weekday)
        expected.append(detector.score(state, obs).expected)
        state = detector.learn(state, obs)
    assert expected[288 * 7 + 1] > 0.7 * expected[288 * 7]  # the window after it


def held_run(detector: Any, observations: Iterable[Observation], side: str) -> list[float]:
    """The CUSUM's level on ``side`` after each window, learning as stage two does:
    nothing from a window at the threshold (an alarm); while the evidence is past
    a quarter of it, for up to 12 windows, the hour profile only
    (``learn_profile``); else all."""
    from services.detector.engine.evaluate import Cusum, EngineSettings

    settings = EngineSettings()
    h = settings.cusum_threshold(14)
    state, cusum, held, levels = detector.init_state(), Cusum(), 0, []
    for obs in observations:
        cusum = cusum.update(detector.score(state, obs), h)
        levels.append(cusum.level(side))
        if cusum.level(side) >= h:
            continue
        if cusum.level(side) >= h / 4 and held < settings.hold_windows:
            held += 1
            state = detector.learn_profile(state, obs)
        else:
            held = 0 if cusum.level(side) < h / 4 else held
            state = detector.learn(state, obs)
    return levels


def test_an_hour_whose_rate_differs_is_learned_though_its_windows_are_held() -> None:
    """Four in five users return, but two in five of those of 23:00 (a late crowd):
    the first nights' evidence holds that hour's windows out of the recent level,
    yet its profile learns them, so from the third night the hour is no alarm
    (were held windows not learned, the hour would be held, and alarm, every night)."""
    from services.detector.engine.evaluate import EngineSettings

    h = EngineSettings().cusum_threshold(14)
    for seed in range(3):
        rng = np.random.default_rng(seed)

        def windows(rng: np.random.Generator = rng) -> Iterator[Observation]:
            for i in range(288 * 5):
                hour = (i // 12) % 24
                n = float(rng.poisson(40))
                rate = 0.4 if hour == 23 else 0.8
                yield Observation(float(rng.binomial(int(n), rate)), n, hour=hour)

        levels = held_run(RatioDetector(), windows(), "down")
        assert max(levels[288 * 2 :]) < h


def test_a_weekday_not_seen_yet_is_judged_with_the_spread_of_those_seen() -> None:
    """Weekends twice as busy as weekdays; the stream starts on a Monday, so the
    second Monday is the first the profile can tell of. Until half of it is seen,
    its expectation is the weekdays' seen on average, weekends included: quieter
    than that is no alarm, as a weekday may run like any weekday seen."""
    from services.detector.engine.evaluate import EngineSettings

    h = EngineSettings().cusum_threshold(14)
    for seed in range(3):
        rng = np.random.default_rng(seed)

        def windows(rng: np.random.Generator = rng) -> Iterator[Observation]:
            for i in range(288 * 7 + 144):
                hour, weekday = (i // 12) % 24, (i // 288) % 7
                x = float(rng.poisson(40 * (2.0 if weekday >= 5 else 1.0)))
                yield Observation(x, sumsq=x, hour=hour, weekday=weekday)

        levels = held_run(CountDetector(), windows(), "down")
        assert max(levels[288 * 7 :]) < h


def test_one_windows_test_is_held_to_the_false_alert_budget() -> None:
    """A window's own test makes windows a day x metrics tests a day per slice: its
    level is what the budget allows them, so a window at p = 5e-6 (one in 200,000)
    alerts no more once 100 slices of 14 metrics are watched."""
    from services.detector.engine.evaluate import EngineSettings

    settings = EngineSettings(false_alerts_per_day=0.5)
    alpha = settings.window_alpha(14)
    assert alpha * 288 * 14 * 100 == pytest.approx(0.5)
    assert alpha < 5e-6
    assert EngineSettings(false_alerts_per_day=1000.0).window_alpha(14) == settings.alpha


def test_a_sparse_count_that_stops_is_an_alarm_though_no_window_is_a_surprise() -> None:
    """Two orders a window at that hour, over-dispersed (their rate varies from
    window to window), then none for an hour. One window without orders is no
    surprise (its p-value is about a third), yet the evidence of the windows
    together crosses the threshold, and the window that crosses it is an alarm."""
    from services.detector.engine.evaluate import Cusum, EngineSettings

    h = EngineSettings().cusum_threshold(14)
    start = 288 * 7 + 13 * 12  # the eighth day, 13:00

    def rate(hour: int) -> float:
        return 0.3 + 1.4 * max(0.0, math.sin((hour - 6) / 18 * math.pi)) if hour >= 6 else 0.3

    for seed in range(4):
        rng = np.random.default_rng(seed)
        detector, alarms = CountDetector(), []
        state, cusum = detector.init_state(), Cusum()
        for i in range(start + 12):
            hour, weekday = (i // 12) % 24, (i // 288) % 7
            mean = float(rng.gamma(2.0 * rate(hour) / 0.5, 0.5))  # dispersion 1.5
            x = float(rng.poisson(mean)) if i < start else 0.0
            obs = Observation(x, sumsq=x, hour=hour, weekday=weekday)
            verdict = detector.score(state, obs)
            cusum = cusum.update(verdict, h)
            alarms.append(cusum.alarm(verdict, "both", h)[1])
            if cusum.level("both") < h / 4:
                state = detector.learn(state, obs)
        assert not any(alarms[:start])
        assert any(alarms[start:])


@pytest.mark.parametrize("kind", ["ratio", "count", "sum", "series"])
def test_learning_leaves_a_new_state_new(kind: str) -> None:
    """New states share their arrays of zeros: a detector that learned for days
    still starts the next slice from nothing."""
    detector = detector_for(kind)
    rng = np.random.default_rng(3)
    state = detector.init_state()
    for i in range(3 * 288):
        x = float(rng.poisson(20.0))
        state = detector.learn(
            state, Observation(x, x + 30.0, x * x, hour=(i // 12) % 24, weekday=i // 288)
        )
    fresh = detector.state_to_json(detector.init_state())
    assert fresh == detector.state_to_json(type(state)())
    arrays = [v for v in fresh.values() if isinstance(v, list)]
    assert arrays and all(not any(values) for values in arrays)
    assert detector.state_to_json(state) != fresh
