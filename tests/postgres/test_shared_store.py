"""Two alerting processes share one PostgreSQL store while an incident is notified; one
is killed with SIGKILL while a request of its is out. Every notification reaches the
receiver exactly once by its Idempotency-Key: the killed process's last request is sent
again by the survivor once its lease runs out, and nothing else is sent twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from services.alerting.notify import LEASE_S
from services.alerting.runtime import build
from services.common.config import OpswatchSettings
from tests.conftest import REPO, PostgresServer
from tests.factories import detector_update
from tests.recording import Recorder, recording_server

pytestmark = pytest.mark.postgres
RECEIVERS = 8


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_server() as rec:
        rec.delay_s = 0.5
        yield rec


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        time.sleep(0.02)


def test_two_alerting_processes_one_killed_mid_dispatch_notify_each_receiver_once(
    postgres: PostgresServer,
    recorder: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "alerting.yaml"
    receivers = [
        {
            "type": "webhook",
            "name": f"hook{i}",
            "url": {"env": f"T_HOOK{i}"},
            "secret": {"env": "T_SECRET"},
        }
        for i in range(RECEIVERS)
    ]
    config.write_text(
        yaml.safe_dump(
            {"receivers": receivers, "routes": [{"receivers": [r["name"] for r in receivers]}]}
        )
    )
    secrets = {"T_SECRET": "s" * 32} | {
        f"T_HOOK{i}": f"{recorder.url}/hook{i}" for i in range(RECEIVERS)
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    url = postgres.database()
    env = {
        **os.environ,
        "OPSWATCH_DATABASE_URL": url,
        "OPSWATCH_ALERTING_CONFIG": str(config),
        "OPSWATCH_GROUP_WAIT": "PT0S",
    }
    book = build(OpswatchSettings(database_url=url, alerting_config=config)).book
    book.ingest(detector_update("conversion_rate", {"region": "eu"}))
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.postgres.dispatch"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"dispatch{n}.log").open("wb"),
            start_new_session=True,
        )
        for n in range(2)
    ]
    try:
        # both processes have a request out: the one killed now is mid-dispatch
        wait_until(lambda: recorder.in_flight == 2, 60, "both processes sending")
        victim = processes[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        wait_until(lambda: book.store.outbox_depth() == 0, LEASE_S + 60, "every row done")
        waited = time.monotonic() - killed_at
    finally:
        for p in processes:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
    paths = Counter(r.path for r in recorder.kept())
    assert paths == {f"/hook{i}": 1 for i in range(RECEIVERS)}
    resent = len(recorder.requests) - len(recorder.kept())
    assert resent == 1  # the killed process's request, sent again after its lease
    assert waited >= LEASE_S - 1
    rows = book.store.outbox_rows()
    assert len(rows) == RECEIVERS
    assert {r["outcome"] for r in rows} == {"sent"}
