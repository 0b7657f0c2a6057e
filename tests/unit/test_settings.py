"""Settings a user gets wrong: each refused by the command at start with one line
that names the setting and its value, exit code 2, and no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from services.cli import app as cli


def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Result:
    """``opswatch replay`` of an empty file under the environment ``env``."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    events = tmp_path / "events.ndjson"
    events.write_text("")
    return CliRunner().invoke(cli, ["replay", "-i", str(events), "-o", str(tmp_path / "o")])


def refused(result: Result) -> str:
    """The one line a refused command printed."""
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr.strip()


def test_an_unknown_log_level_is_refused_listing_the_levels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = refused(replay(tmp_path, monkeypatch, OPSWATCH_LOG_LEVEL="verbose"))
    assert line == (
        "configuration error: OPSWATCH_LOG_LEVEL: 'verbose' is not a log level: "
        "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )


@pytest.mark.usefixtures("own_logging")
@pytest.mark.parametrize("level", ["warning", "WARN", "fatal"])
def test_a_log_level_in_lower_case_or_as_pythons_alias_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    result = replay(tmp_path, monkeypatch, OPSWATCH_LOG_LEVEL=level)
    assert result.exit_code == 0, result.output


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_short_postgres_scheme_is_read_as_postgresql_with_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = closed_port()
    monkeypatch.setenv("OPSWATCH_DATABASE_URL", f"postgres://ops:hunter2@127.0.0.1:{port}/alerts")
    line = refused(CliRunner().invoke(cli, ["db", "upgrade"]))
    assert line.startswith(
        f"the alert store at postgresql+psycopg://ops:***@127.0.0.1:{port}/alerts cannot be "
        "opened (connection failed:"
    )
    assert line.endswith("check OPSWATCH_DATABASE_URL") and "hunter2" not in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:5432", "OPSWATCH_DATABASE_URL: not a database URL: use e.g. sqlite:///"),
        ("oracel://ops:hunter2@db/x", "oracel://ops:***@db/x: 'oracel' is not a database"),
    ],
)
def test_a_database_url_sqlalchemy_cannot_use_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    line = refused(replay(tmp_path, monkeypatch, OPSWATCH_DATABASE_URL=url))
    assert line.startswith("configuration error: ") and message in line


def test_a_database_without_its_driver_is_named_with_the_missing_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSWATCH_DATABASE_URL", "mysql://ops:hunter2@db/alerts")
    line = refused(CliRunner().invoke(cli, ["db", "upgrade"]))
    assert line.startswith("the alert store at mysql://ops:***@db/alerts needs the Python module")


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("OPSWATCH_LATENESS", "-PT5M", "-PT5M is negative: give zero or more"),
        ("OPSWATCH_GROUP_WAIT", "-PT1S", "-PT1S is negative: give zero or more"),
        ("OPSWATCH_IDLE_TIMEOUT", "PT0S", "PT0S is not positive: give more than zero"),
        ("OPSWATCH_REPEAT_INTERVAL", "-P1D", "-P1D is not positive: give more than zero"),
    ],
)
def test_a_negative_or_empty_duration_is_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, value: str, message: str
) -> None:
    line = refused(replay(tmp_path, monkeypatch, **{setting: value}))
    assert line.startswith(f"configuration error: {setting}: {message}, e.g. ")


@pytest.mark.usefixtures("own_logging")
def test_no_lateness_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert replay(tmp_path, monkeypatch, OPSWATCH_LATENESS="PT0S").exit_code == 0
