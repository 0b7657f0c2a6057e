"""Prometheus alerting rules for the pipeline: valid, and doing what their tests say."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).parents[2]
RULES = REPO / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "deploy" / "local" / "prometheus.sh"), "promtool", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def test_the_rules_are_valid() -> None:
    done = promtool("check", "rules", "opswatch-rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "opswatch-rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rule_that_misbehaves_fails_its_tests(tmp_path: Path) -> None:
    broken = (RULES / "opswatch-rules.yml").read_text().replace("> 1800", "> 99999")
    (tmp_path / "opswatch-rules.yml").write_text(broken)
    (tmp_path / "opswatch-rules.test.yml").write_text(
        (RULES / "opswatch-rules.test.yml").read_text()
    )
    done = promtool("test", "rules", "opswatch-rules.test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "OpswatchWatermarkStalled" in done.stdout + done.stderr
