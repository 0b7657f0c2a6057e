"""Nothing lost, nothing twice: the detector killed, stopped past its session timeout
and killed during a backfill gives what one engine gives over the same input, and
the same alerts (the other faults: test_chaos_faults.py)."""

from __future__ import annotations

import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.sinks import to_file
from tests.chaos.conftest import SUMMARY, Broker
from tests.chaos.harness import (
    SESSION_S,
    Input,
    Run,
    check,
    final_until,
    produce,
    topic_after_topic,
)
from tests.integration.test_backfill import (
    GAP_S,
    IDLE_S,
    identities,
    metric_total,
    published,
    replayed,
)


@pytest.mark.seconds(215)
def test_r1_kill_9_the_detector_5_times_and_alerting_twice(
    broker: Broker, tmp_path: Path, data: Input, golden: set[str], rng: random.Random
) -> None:
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r1")
    total = len(data.order)
    kills = sorted(
        [(rng.uniform(0.02, 1.0), "detector") for _ in range(5)]
        + [(rng.uniform(0.02, 1.0), "alerting") for _ in range(2)]
    )
    try:
        run.start_pipeline(data)
        for at, name in kills:
            run.wait_consumed(at, total)
            run.kill(name)
            run.start(name, name)
        found_ok = check(run, data, golden)
    finally:
        run.stop()
    points = ", ".join(f"{name} at {at:.0%}" for at, name in kills)
    SUMMARY.append(f"R1 kill -9 {points}: {found_ok}; {time.monotonic() - clock:.0f} s")


@pytest.mark.seconds(190)
def test_r2_a_worker_stopped_past_its_session_timeout_loses_its_partitions_and_comes_back(
    broker: Broker, tmp_path: Path, data: Input, golden: set[str], rng: random.Random
) -> None:
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r2")
    total = len(data.order)
    at = rng.uniform(0.2, 0.6)
    stopped_s = SESSION_S + 6
    try:
        run.start_pipeline(data, ("detector-a", "detector-b"))
        run.wait_consumed(at, total)
        run.signal("detector-b", signal.SIGSTOP)
        time.sleep(stopped_s)  # the group evicts it and gives its partitions to detector-a
        run.signal("detector-b", signal.SIGCONT)
        found_ok = check(run, data, golden)
    finally:
        run.stop()
    SUMMARY.append(
        f"R2 two workers, one SIGSTOPped for {stopped_s} s at {at:.0%} (session timeout "
        f"{SESSION_S} s): {found_ok}; {time.monotonic() - clock:.0f} s"
    )


@pytest.mark.seconds(200)
def test_r6_a_backfill_topic_after_topic_with_the_detector_killed_3_times(
    broker: Broker, tmp_path: Path, data: Input, golden: set[str], rng: random.Random
) -> None:
    """A producer of its own writes the input one record per event while the detector
    runs: all the orders, a pause longer than the idle timeout, the feedback, a pause,
    the activity. The detector is killed while the orders wait, paused, for the other
    topics; while the activity is being written, at a seeded share of it; and once
    more over the backlog. No event late, lost or counted twice (the aggregates are
    the golden ones), and the alerts are those of ``opswatch replay`` of the events."""
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r6")
    run.env["OPSWATCH_IDLE_TIMEOUT"] = f"PT{IDLE_S}S"
    backfill, (orders, feedback, activity) = topic_after_topic(
        data, ("order", "feedback", "activity")
    )
    late = 0.0

    def detector_metric(name: str) -> float:
        return metric_total(run.services["detector"].url, f"opswatch_detector_{name}")

    def kill_and_restart() -> None:
        nonlocal late
        late += detector_metric("late_events_total")
        run.kill("detector")
        run.start("detector", "detector")

    share = rng.uniform(0.2, 0.8)
    cut = activity.start + int(share * (activity.stop - activity.start))
    at = rng.uniform(0.5, 0.9)
    try:
        run.start("alerting", "alerting")
        run.start("detector", "detector")
        produce(broker.bootstrap, run.topics, backfill, orders)
        run.wait(lambda: detector_metric("paused_partitions") > 0, 120)
        kill_and_restart()
        time.sleep(GAP_S)  # the producer pauses: the topics written so far go quiet
        produce(broker.bootstrap, run.topics, backfill, feedback)
        time.sleep(GAP_S)
        produce(broker.bootstrap, run.topics, backfill, slice(activity.start, cut))
        pool = ThreadPoolExecutor(1)
        rest = pool.submit(produce, broker.bootstrap, run.topics, backfill, slice(cut, None))
        kill_and_restart()
        rest.result(timeout=300)
        pool.shutdown()
        run.wait_consumed(at, len(data.order))
        kill_and_restart()  # over the backlog
        found_ok = check(run, data, golden)
        late += detector_metric("late_events_total")
        source = tmp_path / "backfill.ndjson"
        to_file(data.events, source)
        until = final_until(broker.bootstrap, run.topics)
        before = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        expected = identities(replayed(source, tmp_path), before)
        assert expected, "the replay raises no alert: the test would prove nothing"
        assert identities(published(broker.bootstrap, run.topics.alerts), before) == expected
        assert late == 0
    finally:
        run.stop()
    SUMMARY.append(
        f"R6 a backfill topic after topic, {GAP_S} s between topics (idle timeout {IDLE_S} s), "
        f"the detector killed -9 while the orders waited paused, at {share:.0%} of the "
        f"activity while writing the rest, and at {at:.0%} of the backlog: {found_ok}; "
        f"late=0 (each detector before its kill, and the last); the alerts of the replay "
        f"({len(expected)} firing windows); {time.monotonic() - clock:.0f} s"
    )
