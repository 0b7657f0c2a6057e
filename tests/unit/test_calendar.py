"""The calendar: the file format, when and where an entry applies, and its effects."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.common.events import event_time, leaf_of
from services.common.simulator import Incident, Simulator
from services.detector.engine.calendar import (
    Calendar,
    CalendarError,
    load_calendar,
    parse_entry,
)
from services.detector.engine.catalog import load_catalog
from services.detector.engine.detectors import CountDetector, MeanDetector, Observation
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings

CATALOG = load_catalog()
REPLAY = (sys.executable, "-m", "services.cli", "replay")
ISSUE_FILE = """\
events:
  - name: Winter sale
    start: 2026-01-17T00:00:00Z     # RFC 3339; or a local time with `timezone:`
    end: 2026-01-18T00:00:00Z
    slices: [{}]                    # {} is all-up; {region: eu} a slice and its sub-slices
    effect: expect                  # expect | exclude | mute
    expect: {active_users: 2.0, order_count: 2.6, conversion_rate: 1.3}
  - name: New year
    every: year                     # year | week; dates repeat
    start: 2026-01-01T00:00:00Z
    end: 2026-01-02T00:00:00Z
    slices: [{}]
    effect: exclude
"""


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "sale",
        "start": "2026-03-04T00:00:00Z",
        "end": "2026-03-06T00:00:00Z",
        "slices": [{}],
        "effect": "expect",
        "expect": {"order_count": 2.0},
    }
    return {**base, **fields}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(text)
    return path


def test_the_issue_example_reads_and_repeats_new_year(tmp_path: Path) -> None:
    calendar = load_calendar(write(tmp_path, ISSUE_FILE), CATALOG.names)
    sale, new_year = calendar.entries
    assert [e.name for e in calendar.at(at("2026-01-17T12:00:00+00:00"))] == ["Winter sale"]
    assert calendar.at(at("2026-01-18T00:00:00+00:00")) == ()  # the end is not inside
    assert calendar.at(at("2027-01-01T23:59:00+00:00")) == (new_year,)
    assert calendar.at(at("2027-01-17T12:00:00+00:00")) == ()  # the sale happens once
    assert sale.factor("order_count") == 2.6 and sale.factor("gmv") is None


def test_local_times_follow_their_zone_and_weeks_repeat() -> None:
    # Friday evenings 18:00-22:00 Berlin time, every week, across the DST change
    spec = parse_entry(
        entry(
            start="2026-03-20T18:00:00",
            end="2026-03-20T22:00:00",
            timezone="Europe/Berlin",
            every="week",
            effect="mute",
            expect=None,
        )
    )
    calendar = Calendar.of([spec])
    assert calendar.at(at("2026-03-20T17:30:00+00:00"))  # 18:30 CET
    assert calendar.at(at("2026-04-03T16:30:00+00:00"))  # 18:30 CEST, two weeks later
    assert not calendar.at(at("2026-04-03T20:30:00+00:00"))  # 22:30 CEST
    assert not calendar.at(at("2026-04-02T16:30:00+00:00"))  # a Thursday


def test_slices_cover_their_sub_slices_and_effects_rank() -> None:
    eu = parse_entry(entry(name="eu sale", slices=[{"region": "eu"}]))
    mute = parse_entry(entry(name="release", effect="mute", expect=None))
    off = parse_entry(
        entry(name="outage drill", effect="exclude", expect=None, slices=[{"channel": "app"}])
    )
    active = Calendar.of([mute, eu, off]).entries
    pick = Calendar.applies
    web = {"region": "eu", "channel": "web"}
    assert pick(active, web, "order_count").to_json() == {  # type: ignore[union-attr]
        "name": "eu sale",
        "effect": "expect",
        "factor": 2.0,
    }
    assert pick(active, web, "gmv").entry.name == "release"  # type: ignore[union-attr]
    assert pick(active, {"region": "eu", "channel": "app"}, "order_count").effect == "exclude"  # type: ignore[union-attr]
    assert pick(active, {"region": "na"}, "order_count").entry.name == "release"  # type: ignore[union-attr]
    assert pick(Calendar.of([eu]).entries, {}, "order_count") is None  # all-up is above eu
    assert pick(Calendar.of([eu]).entries, web, "gmv").to_json()["factor"] is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("events:\n  - name: x\n    start: [\n", "line 4: not valid YAML"),
        (
            "events:\n  - name: Sale\n    start: 2026-01-02T00:00:00Z\n"
            "    end: 2026-01-01T00:00:00Z\n    slices: [{}]\n    effect: mute\n",
            "line 2: events.0 (Sale): end: must be after start",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-02T00:00:00Z\n    slices: [{}]\n    effect: pause\n",
            "line 6: events.0 (Sale): effect: Input should be 'expect', 'exclude' or 'mute'",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00\n"
            "    end: 2026-01-02T00:00:00\n    slices: [{}]\n    effect: mute\n",
            "events.0 (Sale): start: give an RFC 3339 time with an offset, or a local time",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-02T00:00:00Z\n    slices: [{country: fr}]\n    effect: mute\n",
            "line 5: events.0 (Sale): slices.0.country.[key]: Input should be 'region'",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-02T00:00:00Z\n    slices: [{}]\n    effect: expect\n",
            "events.0 (Sale): expect: an `expect` entry names at least one metric",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-02T00:00:00Z\n    slices: [{}]\n    effect: expect\n"
            "    expect: {orders: 2.0}\n",
            "events.0 (Sale): expect.orders: no such metric in the catalog",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-02T00:00:00Z\n    slices: [{}]\n    effect: expect\n"
            "    expect: {order_count: -1}\n",
            "line 7: events.0 (Sale): expect.order_count: Input should be greater than 0",
        ),
        (
            "events:\n  - name: Sale\n    start: 2026-01-01T00:00:00Z\n"
            "    end: 2026-01-09T00:00:00Z\n    every: week\n    slices: [{}]\n    effect: mute\n",
            "events.0 (Sale): end: an entry repeated every week must not outlast it",
        ),
    ],
    ids=[
        "bad-yaml",
        "end-before-start",
        "unknown-effect",
        "local-time-without-zone",
        "unknown-dimension",
        "expect-without-factors",
        "unknown-metric",
        "negative-factor",
        "longer-than-its-repeat",
    ],
)
def test_a_bad_file_names_the_entry_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CalendarError) as caught:
        load_calendar(write(tmp_path, text), CATALOG.names)
    assert message in str(caught.value)


def test_a_bad_calendar_stops_replay_with_exit_code_2(tmp_path: Path) -> None:
    path = write(tmp_path, "events:\n  - name: Sale\n    start: tomorrow\n")
    events = tmp_path / "events.ndjson"
    events.write_text("")
    for env, flag in (({"OPSWATCH_CALENDAR_FILE": str(path)}, []), ({}, ["--calendar", str(path)])):
        done = subprocess.run(
            [*REPLAY, "-i", str(events), "-o", str(tmp_path / "o"), *flag],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2
        assert "calendar error" in done.stderr and "events.0 (Sale): start" in done.stderr


def test_a_calendar_given_to_replay_is_used_instead_of_a_broken_calendar_file(
    tmp_path: Path,
) -> None:
    broken = write(tmp_path, "events:\n  - name: Sale\n    start: tomorrow\n")
    given = tmp_path / "given.yaml"
    given.write_text(ISSUE_FILE)
    events = tmp_path / "events.ndjson"
    events.write_text("")
    done = subprocess.run(
        [*REPLAY, "-i", str(events), "-o", str(tmp_path / "o"), "--calendar", str(given)],
        env={**os.environ, "OPSWATCH_CALENDAR_FILE": str(broken)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "calendar error" not in done.stderr
    assert done.stdout.startswith("0 events, 0 alert updates")


def test_a_factor_scales_what_a_count_and_a_mean_expect() -> None:
    counts = CountDetector(warmup=1)
    state = counts.init_state()
    for i in range(600):  # two days of an hour profile at 100 a window
        state = counts.learn(state, Observation(100.0, sumsq=100.0, hour=i // 12 % 24))
    doubled = Observation(200.0, sumsq=200.0, hour=0)
    assert counts.score(state, doubled).p_up < 1e-10
    expected = counts.score(state, Observation(200.0, sumsq=200.0, hour=0, expect=2.0))
    assert expected.expected == pytest.approx(200.0, rel=0.05) and expected.p_up > 0.01
    means = MeanDetector(warmup=1)
    mstate = means.init_state()
    for _ in range(30):
        mstate = means.learn(mstate, Observation(50.0 * 40, 40, 50.0**2 * 40 + 39 * 25))
    assert means.score(
        mstate, Observation(60.0 * 40, 40, 60.0**2 * 40, expect=1.2)
    ).expected == pytest.approx(60.0)


def _detectors_at(calendar: Calendar, *times: datetime) -> list[dict[str, Any]]:
    """Every slice's detector states once the windows before each of ``times`` are
    judged, over simulated traffic that doubles from 02:00 to 04:00."""
    start = datetime(2026, 3, 2, tzinfo=UTC)
    surge = Incident(
        family="traffic", start=start + timedelta(hours=2), duration=timedelta(hours=2), magnitude=1
    )
    sim = Simulator(start, timedelta(hours=5), seed=7, sessions_per_minute=20.0, incidents=[surge])
    engine = Engine(CATALOG, EngineSettings(min_slice_volume=0), calendar)
    ev = engine.evaluator
    states: list[dict[str, Any]] = []
    for event in sim.events():
        engine.add(event, event_time(event), leaf_of(event))
        engine.poll()
        if len(states) < len(times) and (ev.evaluated_until or 0) >= times[len(states)].timestamp():
            assert ev.evaluated_until == times[len(states)].timestamp()
            states.append({key: ev.slice_snapshot(key)["detectors"] for key in ev.slices})
    return states


@pytest.mark.parametrize("effect", ["exclude", "expect"])
def test_windows_inside_exclude_or_a_named_expect_teach_nothing(effect: str) -> None:
    """The detectors' states after a two-hour entry are those they had at its start."""
    spec = parse_entry(
        entry(
            start="2026-03-02T02:00:00Z",
            end="2026-03-02T04:00:00Z",
            effect=effect,
            expect={m: 2.0 for m in CATALOG.names} if effect == "expect" else None,
        )
    )
    times = (datetime(2026, 3, 2, 2, tzinfo=UTC), datetime(2026, 3, 2, 4, tzinfo=UTC))
    before, after = _detectors_at(Calendar.of([spec]), *times)
    shared = before.keys() & after.keys()
    assert len(shared) > 20
    assert {k: after[k] for k in shared} == {k: before[k] for k in shared}
    # and without the entry the surge is learned
    _, learned = _detectors_at(Calendar(), *times)
    assert all(learned[k] != before[k] for k in shared)
