"""``opswatch bench --quick`` against the real broker: every figure of the contract,
from one run, with the pipeline's answers checked (speed is reported, not asserted;
30,000 events instead of the quick run's 100,000 measure every figure as well)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient

KEYS = (
    "detector_events_per_s",
    "detector_2workers_events_per_s",
    "detector_single_records_events_per_s",
    "limit_events_per_s",
    "replay_events_per_s",
    "read_limit_events_per_s",
    "ingest_events_per_s",
    "producer_limit_events_per_s",
    "latency_p50_s",
    "latency_p99_s",
    "rss_bytes_10k_slices",
    "state_bytes_per_slice_metric",
)


@pytest.mark.seconds(200)
def test_quick_bench_measures_every_figure_and_cleans_up(bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    before = bench_topics(bootstrap)
    env = {**os.environ, "OPSWATCH_KAFKA_BOOTSTRAP": bootstrap, "OPSWATCH_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "--quick",
            "--events",
            "30000",
            "--json",
            str(out),
        ],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = orjson.loads(out.read_bytes())
    print({k: figures[k] for k in KEYS})  # the figures, in the test log
    assert all(figures[k] > 0 for k in KEYS)
    # every event sent was accepted (the quick run sends 40,000 at most)
    assert figures["events"] == figures["ingest_events"] == 30_000
    # every alert one engine raises over the spikes was listed by the API, and timed
    assert (
        figures["alerts_missed"] == 0 and figures["latency_samples"] == figures["alerts_expected"]
    )
    assert figures["alerts_expected"] >= 4
    assert figures["latency_p50_s"] <= figures["latency_p99_s"]
    assert (figures["slices_1k"], figures["slices_10k"]) == (1_000, 10_000)
    assert figures["rss_bytes_10k_slices"] > figures["rss_bytes_1k_slices"]
    assert "detector, 1 worker" in done.stdout and "events/s" in done.stdout
    assert figures["slices_100k"] == 0 and "not measured (--quick)" in done.stdout
    assert bench_topics(bootstrap) <= before  # the run's own topics are gone


def bench_topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t for t in admin.list_topics() if t.startswith("bench")}
    finally:
        admin.close()
