"""Fault tests on a broker of their own (so R5 may kill it), seeded, with one summary line each."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.bench.services import free_port
from tests.chaos.harness import ANOMALIES, Input, build_input, golden_alerts
from tests.integration.conftest import REPO

KAFKA = REPO / "deploy" / "local" / "kafka.sh"
SUMMARY: list[str] = []  # a line per test, printed at the end (tests/conftest.py)


def chaos_seed() -> int:
    return int(os.environ.get("OPSWATCH_CHAOS_SEED", "20261127"))


@pytest.fixture
def rng() -> random.Random:
    return random.Random(chaos_seed())


@dataclass
class Broker:
    """A KRaft broker started by these tests with kafka.sh, in a cache of its own."""

    cache: Path
    port: int
    controller_port: int
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, command: str) -> None:
        env = {
            **os.environ,
            "OPSWATCH_CACHE": str(self.cache),
            "OPSWATCH_KAFKA_LIBS": os.environ.get(
                "OPSWATCH_KAFKA_LIBS", str(REPO / ".cache" / "kafka-libs")
            ),
            "OPSWATCH_KAFKA_PORT": str(self.port),
            "OPSWATCH_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            **self.extra_env,
        }
        subprocess.run(["bash", str(KAFKA), command], env=env, check=True, capture_output=True)

    def up(self) -> None:
        self._script("up")

    def down(self) -> None:
        self._script("down")

    def kill(self) -> None:
        """kill -9 the broker this fixture started (its pid is in its own cache)."""
        pid = int((self.cache / "kafka.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """On free ports, or those of OPSWATCH_CHAOS_KAFKA_PORT and
    OPSWATCH_CHAOS_KAFKA_CONTROLLER_PORT when set."""
    b = Broker(
        tmp_path_factory.mktemp("chaos-kafka"),
        int(os.environ.get("OPSWATCH_CHAOS_KAFKA_PORT") or free_port()),
        int(os.environ.get("OPSWATCH_CHAOS_KAFKA_CONTROLLER_PORT") or free_port()),
    )
    b.up()
    try:
        yield b
    finally:
        b.down()


POISON = 0.01


@pytest.fixture(scope="module")
def data() -> Input:
    return build_input(random.Random(chaos_seed()), POISON)


@pytest.fixture(scope="module")
def golden(data: Input) -> set[str]:
    """The alert ids one engine gives over the input: each in an anomaly's slice or a
    parent of it, from the anomaly's start to twenty minutes after it (a parent's
    evidence from a five-minute spike of some sixty times its rate holds while
    the parent stays above its baseline), and all but at most the first anomaly
    found: the first comes three and a half hours into the stream, while the
    baselines are young and a window's own test is held to the false-alert budget,
    so that one spike may not be enough. The Kafka runs must give exactly these."""
    alerts = golden_alerts(data)
    found = set()
    for a in alerts.values():
        started = datetime.fromisoformat(a["started_at"])
        cause = [
            i
            for i, anomaly in enumerate(ANOMALIES)
            if a["slice"].items() <= anomaly.slice.items()
            and anomaly.start <= started < anomaly.start + anomaly.duration + timedelta(minutes=20)
        ]
        assert cause, f"an alert no anomaly explains: {a['metric']} {a['slice']} {started}"
        found.update(cause)
    assert found >= set(range(1, len(ANOMALIES))), f"found only {sorted(found)}"
    return set(alerts)
