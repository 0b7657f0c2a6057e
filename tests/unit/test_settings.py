"""Settings a user gets wrong: each refused by the command at start with one line
that names the setting and its value, exit code 2, and no traceback."""

from __future__ import annotations

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
def test_a_log_level_in_lower_case_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = replay(tmp_path, monkeypatch, OPSWATCH_LOG_LEVEL="warning")
    assert result.exit_code == 0, result.output
