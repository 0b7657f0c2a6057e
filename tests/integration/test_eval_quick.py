"""``opswatch eval scenarios --quick``: the graded suite's small subset end to end, both
detectors judged on the same runs (no broker needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest


# about 8 minutes of CPU on two processes; longer beside other tests on a small machine
@pytest.mark.seconds(470)
@pytest.mark.timeout(960)
def test_quick_graded_suite_reports_both_detectors(tmp_path: Path) -> None:
    out = tmp_path / "graded.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "eval",
            "scenarios",
            "--quick",
            "--jobs",
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    graded = orjson.loads(out.read_bytes())["graded"]
    rows = graded["rows"]
    assert len(rows) == 4
    assert {r["kind"] for r in rows} == {"ratio", "count", "sum", "users"}
    for row in rows:
        assert row["evidence_nats"] > 5  # each is detectable in principle
        for detector in ("opswatch", "textbook"):
            verdict = row[detector]
            assert (verdict["delay_windows"] is not None) == verdict["detected"]
            if verdict["detected"]:
                assert 0 <= verdict["delay_windows"] < row["duration_windows"]
        oracle = row["oracle_delay_windows"]  # the true rates and onset known
        assert oracle is None or 0 <= oracle < row["duration_windows"]
        assert f"{row['evidence_nats']:.1f}n" in run.stdout  # the printed table
    # the textbook's threshold is calibrated to opswatch's clean-run false alerts
    rate = graded["false_alerts_per_day_per_100_slices"]
    assert rate["textbook"] <= rate["opswatch"]
    assert graded["textbook_threshold"] > 1.0
    # one of them is clear, whatever the detectors make of it
    assert max(r["evidence_nats"] for r in rows) >= 20
