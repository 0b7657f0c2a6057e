"""opswatch's own services as child processes, each in a process group of its own:
started for a benchmark (and by the tests), stopped after it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceError(RuntimeError):
    """A service the benchmark started died or never answered."""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def check(self) -> None:
        if self.process.poll() is not None:
            raise ServiceError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory of the service's process now (``VmHWM``: the most it has had)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise ServiceError(f"no {field} for {self.name}")

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (every label) on the service's /metrics."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        """SIGTERM to the service's own process group; SIGKILL after 20 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def spawn(name: str, kind: str, env: Mapping[str, str], workdir: Path, port: int = 0) -> Service:
    """``opswatch run kind`` in ``workdir``, in a process group of its own, on ``port``
    (0: a free one), its output appended to ``workdir/name.log``."""
    port = port or free_port()
    env = {
        "OPSWATCH_DETECTOR_DATA_DIR": str(workdir / f"{name}-data"),
        **env,
        f"OPSWATCH_{kind.upper()}_PORT": str(port),
        "OPSWATCH_DETECTOR_METRICS_PORT": str(port),
    }
    log = workdir / f"{name}.log"
    with log.open("ab") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", kind],
            cwd=workdir,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log, port)


def ready(service: Service, health: str) -> Service:
    """The service once ``health`` answers; stopped when it never does."""
    try:
        wait_until(lambda: _answers(service.url + health), 90, [service], f"{service.name}")
    except BaseException:
        service.stop()
        raise
    return service


def start(
    name: str, kind: str, env: Mapping[str, str], workdir: Path, health: str, port: int = 0
) -> Service:
    """``spawn``, then ``ready``."""
    return ready(spawn(name, kind, env, workdir, port), health)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    services: list[Service],
    what: str,
    every_s: float = 0.05,
) -> float:
    """Poll ``check`` until it holds (the time it did, monotonic); a service dying or
    the timeout passing is a ServiceError."""
    deadline = time.monotonic() + timeout_s
    while True:
        for service in services:
            service.check()
        with contextlib.suppress(httpx.HTTPError):  # a busy service drops a poll now and then
            if check():
                return time.monotonic()
        if time.monotonic() > deadline:
            raise ServiceError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
