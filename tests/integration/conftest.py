"""Real services against the real local broker, each in its own process group."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.bench.services import Service, ServiceError, free_port, start

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="session")
def bootstrap() -> str:
    value = os.environ.get("OPSWATCH_KAFKA_BOOTSTRAP")
    if not value:
        pytest.fail("integration tests need a broker: `make test` or OPSWATCH_KAFKA_BOOTSTRAP")
    return value


@dataclass
class Stack:
    namespace: str
    env: dict[str, str]
    tmp: Path
    services: list[Service]

    def start(self, name: str, health: str | None = "/healthz", port: int | None = None) -> Service:
        service = launch(name, name, port or free_port(), self.env, self.tmp, health or "/metrics")
        self.services.append(service)
        return service

    def wait(self, check: Callable[[], bool], timeout_s: float) -> None:
        wait_for(check, timeout_s, self.services)


def launch(name: str, kind: str, port: int, env: dict[str, str], cwd: Path, health: str) -> Service:
    """``opswatch run kind`` in a process group of its own on ``port``, its output
    appended to ``cwd/name.log``; returned once ``health`` answers."""
    try:
        return start(name, kind, env, cwd, health, port)
    except ServiceError as exc:
        pytest.fail(str(exc))


def wait_for(
    check: Callable[[], bool], timeout_s: float, services: list[Service] | None = None
) -> None:
    """Poll ``check``; fail early when one of ``services`` dies, and with their logs."""
    services = services or []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for service in services:
            if service.process.poll() is not None:
                pytest.fail(f"{service.name} exited early:\n{service.tail()}")
        if check():
            return
        time.sleep(0.5)
    logs = "".join(
        f"\n--- {s.name} metrics:\n{_opswatch_metrics(s)}\n--- {s.name} log:\n{s.tail()}"
        for s in services
    )
    pytest.fail(f"timed out after {timeout_s:.0f} s{logs}")


def _opswatch_metrics(service: Service) -> str:
    """The service's own non-zero metrics, to tell which stage a stuck pipeline is stuck in."""
    try:
        text = httpx.get(service.url + "/metrics", timeout=2).text
    except httpx.HTTPError as exc:
        return f"(no metrics: {exc})"
    return "\n".join(
        line
        for line in text.splitlines()
        if line.startswith("opswatch_") and not line.endswith((" 0.0", " 0"))
    )


@pytest.fixture
def stack(bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """Services in a topic namespace of their own, so tests never see each other's data."""
    with new_stack({"OPSWATCH_KAFKA_BOOTSTRAP": bootstrap}, tmp_path) as s:
        yield s


@contextlib.contextmanager
def new_stack(kafka: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """A stack reaching Kafka with the settings ``kafka``, its services stopped after."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        **kafka,
        "OPSWATCH_TOPIC_NAMESPACE": ns,
        "OPSWATCH_DETECTOR_APP_ID": f"{ns}-detector",
        "OPSWATCH_DETECTOR_DATA_DIR": str(tmp_path / "detector"),
        "OPSWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'alerts.db'}",
        "PYTHONPATH": str(REPO),
        "OPSWATCH_LOG_LEVEL": "INFO",
    }
    s = Stack(ns, env, tmp_path, [])
    try:
        yield s
    finally:
        for service in reversed(s.services):
            service.stop()
