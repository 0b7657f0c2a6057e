"""Golden alerts: the engine's whole alert stream on fixed simulator days, kept under
tests/golden/, so that a change to how the engine holds and moves its data (not to
what it judges) shows as no change at all.

Each case is one scenario of ``opswatch eval scenarios``' classic suite (three days
of simulated traffic, seed 42, 60 sessions a minute), every alert update it raises
in order, plus ``opswatch replay`` over two simulated days written as a file. A
difference names the first update that differs. Three cases run with the tests;
``OPSWATCH_GOLDEN=all`` runs every one (``make golden``), and
``OPSWATCH_GOLDEN=record`` writes them anew, after a change meant to alter alerts.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.common.config import OpswatchSettings
from services.common.simulator import Incident, Simulator
from services.detector.evaluation import scenarios
from services.detector.replay import replay

HERE = Path(__file__).parent
MODE = os.environ.get("OPSWATCH_GOLDEN", "")
# one ratio, one whose users return and one whose users lapse: every kind of state
EVERY_RUN = ("clean", "slow returning-rate drift", "lapsed-user spike")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def compare(got: Any, want: Any, where: str = "") -> Iterator[str]:
    """Differences between two alert values; floats equal to 1e-9 (another platform's
    libm may differ in the last bit)."""
    if isinstance(want, float) and isinstance(got, int | float):
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12):
            yield f"{where}: {got!r} != {want!r}"
    elif isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(want.keys() | got.keys()):
            yield from compare(got.get(key), want.get(key), f"{where}.{key}")
    elif isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            yield from compare(g, w, f"{where}[{i}]")
    elif got != want:
        yield f"{where}: {got!r} != {want!r}"


def check(name: str, updates: list[dict[str, Any]]) -> None:
    path = HERE / f"{name}.ndjson"
    if MODE == "record":
        path.write_bytes(
            b"".join(orjson.dumps(u, option=orjson.OPT_APPEND_NEWLINE) for u in updates)
        )
        return
    want = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    for i, (got, expected) in enumerate(zip(updates, want, strict=False)):
        diffs = list(compare(got, expected))
        assert not diffs, (
            f"update {i} of {name} ({expected['metric']} {expected['slice']} "
            f"{expected['window_start']}) differs: " + "; ".join(diffs[:5])
        )
    assert len(updates) == len(want), f"{name}: {len(updates)} updates, golden has {len(want)}"


def chosen(names: list[str]) -> list[Any]:
    return [
        pytest.param(n, marks=() if MODE or n in EVERY_RUN else pytest.mark.skip("make golden"))
        for n in names
    ]


@pytest.mark.seconds(105)
@pytest.mark.parametrize("name", chosen([s.name for s in (*scenarios.SUITE, *scenarios.CLEAN)]))
def test_a_scenario_raises_its_golden_alerts(name: str) -> None:
    settings = OpswatchSettings()
    scenario = next(s for s in (*scenarios.SUITE, *scenarios.CLEAN) if s.name == name)
    updates, _ = scenarios.scenario_updates(
        scenario, settings.catalog(), settings.engine(), 60.0, 42
    )
    check(f"scenario-{slug(name)}", updates)


@pytest.mark.parametrize("name", chosen(["replay of two days"]))
def test_replay_of_a_file_raises_its_golden_alerts(name: str) -> None:
    settings = OpswatchSettings()
    outage = Incident(
        family="conversion",
        slice={"region": "eu"},
        start=scenarios.START + timedelta(days=1, hours=13),
        duration=timedelta(hours=2),
        magnitude=0.6,
    )
    sim = Simulator(
        scenarios.START, timedelta(days=2), seed=11, sessions_per_minute=60, incidents=[outage]
    )
    source = io.BytesIO(
        b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in sim.events())
    )
    sink = io.BytesIO()
    replay(source, sink, settings.catalog(), settings.engine())
    check(slug(name), [orjson.loads(line) for line in sink.getvalue().splitlines()])
