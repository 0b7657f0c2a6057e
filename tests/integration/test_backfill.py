"""A backfill written by a producer of its own, topic after topic, through the detector:
the same alerts as a replay of the same file, and no event dropped as late."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from services.common.connection import KafkaConnection
from services.common.events import Topics, partition_key
from services.common.kafka import ensure_topics, producer
from services.common.simulator import Incident, Simulator
from services.common.sinks import to_file
from tests.factories import T0
from tests.integration.conftest import REPO, Stack
from tests.integration.test_end_to_end import judged_until

PARTITIONS = 2
IDLE_S = 3
GAP_S = 3 * IDLE_S  # between two topics: longer than the idle timeout
DAYS = 3
# a complaint spike in one leaf slice on the last day, so that there is an alert to find
SPIKE = Incident(
    family="complaint",
    slice={"region": "eu", "channel": "web", "platform": "android"},
    start=T0 + timedelta(days=DAYS - 1, hours=19),
    duration=timedelta(minutes=30),
    magnitude=9.5,
)


def metric_total(detector_url: str, name: str) -> float:
    text = httpx.get(detector_url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


def produce(bootstrap: str, topic: str, events: Iterable[dict[str, Any]]) -> int:
    """One event per record, keyed by its leaf slice as ingest keys it."""
    prod = producer(KafkaConnection(bootstrap), "backfill")
    n = 0
    try:
        for event in events:
            prod.send(topic, key=partition_key(event), value=orjson.dumps(event))
            n += 1
        prod.flush()
    finally:
        prod.close()
    return n


def unread(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the consumer group has not committed yet."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group)[group]
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(
            end - (committed[tp].offset if tp in committed else 0)
            for tp, end in consumer.end_offsets(tps).items()
        )
    finally:
        consumer.close()
        admin.close()


def published(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return [orjson.loads(r.value) for r in consumer]
    finally:
        consumer.close()


def replayed(source: Path, tmp: Path) -> list[dict[str, Any]]:
    out = tmp / "replay.alerts.ndjson"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", "-i", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def identities(alerts: Iterable[dict[str, Any]], before: str) -> set[tuple[str, str, str]]:
    """The windows each alert fired for: metric, slice and window, up to ``before``."""
    return {
        (a["metric"], orjson.dumps(a["slice"], option=orjson.OPT_SORT_KEYS).decode(), start)
        for a in alerts
        if a["status"] == "firing" and (start := a["window_start"]) < before
    }


def test_a_backfill_written_topic_after_topic_gives_the_replays_alerts(
    stack: Stack, bootstrap: str
) -> None:
    sim = Simulator(T0, timedelta(days=DAYS), seed=7, sessions_per_minute=8, incidents=[SPIKE])
    events = list(sim.events())
    source = stack.tmp / "backfill.ndjson"
    to_file(events, source)
    stack.env.update(
        {
            "OPSWATCH_KAFKA_PARTITIONS": str(PARTITIONS),
            "OPSWATCH_IDLE_TIMEOUT": f"PT{IDLE_S}S",
        }
    )
    topics = Topics(stack.namespace)
    ensure_topics(KafkaConnection(bootstrap), topics, PARTITIONS)
    detector = stack.start("detector", health=None)
    clock = time.monotonic()
    for i, (etype, topic) in enumerate(topics.events.items()):
        if i:
            time.sleep(GAP_S)  # the producer pauses: the topics read so far go quiet
        produce(bootstrap, topic, (e for e in events if e["type"] == etype))
    # the last window that closes without a replay's end of input: every topic ends
    # there, and the lateness holds the one after it open
    end = max(e["ts"] for e in events)
    until = datetime.fromisoformat(end) - timedelta(minutes=15)
    stack.wait(lambda: judged_until(detector.url) >= until.timestamp(), 240)
    group = f"{stack.namespace}-detector"
    stack.wait(lambda: unread(bootstrap, group, topics.reports) == 0, 60)
    seconds = time.monotonic() - clock

    assert metric_total(detector.url, "opswatch_detector_late_events_total") == 0
    assert metric_total(detector.url, "opswatch_detector_events_processed_total") == len(events)
    before = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    expected = identities(replayed(source, stack.tmp), before)
    assert expected, "the replay raises no alert: the test would prove nothing"
    assert identities(published(bootstrap, topics.alerts), before) == expected
    print(f"backfill of {len(events)} events judged in {seconds:.0f} s")
