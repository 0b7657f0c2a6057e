"""The alert store's databases for every test that takes ``store_url``: a SQLite file,
and a database of its own on a real PostgreSQL 15 started once per session by
deploy/local/postgres.sh (``-m postgres`` selects the PostgreSQL cases alone)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.chaos.conftest import SUMMARY, chaos_seed

REPO = Path(__file__).parents[1]
POSTGRES = REPO / "deploy" / "local" / "postgres.sh"
# Below Linux's ephemeral range (32768+), where free_port() and the chaos broker pick
# theirs, and clear of the Kafka ports 9092/9093, 19092-19094 and 29092/29093
PG_PORTS = range(25432, 27432)


@dataclass
class PostgresServer:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "OPSWATCH_PG_DIR": str(self.folder)}
        env["OPSWATCH_PG_PORT"] = str(self.port)
        return subprocess.run(
            ["bash", str(POSTGRES), command], env=env, capture_output=True, text=True, check=False
        )

    def up(self) -> bool:
        return self._script("up").returncode == 0

    def down(self) -> None:
        self._script("down")

    def _admin(self, statement: str) -> None:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(statement))
        engine.dispose()

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def drop(self, url: str) -> None:
        """Drop a database ``database`` made, its sessions ended."""
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    # not under pytest's 0700 temporary folder: as root, the server runs as `postgres`
    folder = Path(tempfile.mkdtemp(prefix="opswatch-pg-"))
    folder.chmod(0o755)
    for port in random.sample(PG_PORTS, 10):
        server = PostgresServer(folder / str(port), port)
        if _free(port) and server.up():
            break
        server.down()
    else:
        pytest.fail(f"PostgreSQL would not start on 10 ports; see the logs under {folder}")
    try:
        yield server
    finally:
        server.down()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty alert store: a SQLite file, or a new database on the session's PostgreSQL
    (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.database()
    yield url
    server.drop(url)


@pytest.fixture
def own_logging() -> Iterator[None]:
    """The command configures logging on the root logger; give it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files whose tests take longest (by the ``seconds`` they are marked with)
    first, the rest as collected: pytest-xdist hands out a file (or test) at a time in
    this order, and one started last would leave the other core idle while it runs."""
    weight: dict[Path, float] = {}
    for item in items:
        mark = item.get_closest_marker("seconds")
        if mark is not None and item.get_closest_marker("skip") is None:
            weight[item.path] = weight.get(item.path, 0.0) + mark.args[0]
    items.sort(key=lambda item: -weight.get(item.path, 0.0))  # stable: a file stays whole


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker, hand the chaos summary lines to the controller."""
    handed = getattr(session.config, "workeroutput", None)
    if handed is not None:
        handed["chaos_summary"] = list(SUMMARY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the pytest-xdist controller: a worker's chaos summary lines."""
    SUMMARY.extend(getattr(node, "workeroutput", {}).get("chaos_summary", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY:
        terminalreporter.section(f"chaos (seed {chaos_seed()}, OPSWATCH_CHAOS_SEED to change)")
        for line in SUMMARY:
            terminalreporter.write_line(line)
