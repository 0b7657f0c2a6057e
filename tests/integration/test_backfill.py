"""A backfill written by a producer of its own, topic after topic, through the detector:
the same alerts as a replay of the same file, and no event dropped as late."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer

from services.bench.services import Service
from services.common.connection import KafkaConnection
from services.common.events import Topics, event_time, partition_key
from services.common.kafka import ensure_topics, producer
from services.common.simulator import Incident, Simulator
from services.common.sinks import to_file
from services.detector.engine.catalog import load_catalog
from services.detector.engine.evaluate import EngineSettings
from services.detector.replay import replay
from tests.chaos.harness import lag
from tests.factories import T0
from tests.integration.conftest import REPO, Stack
from tests.integration.test_end_to_end import judged_until

PARTITIONS = 2
IDLE_S = 3
GAP_S = 3 * IDLE_S  # between two topics: longer than the idle timeout
DAYS = 2  # the second day is judged against the first: enough to raise alerts
# a complaint spike in one leaf slice on the last day, so that there is an alert to find
SPIKE = Incident(
    family="complaint",
    slice={"region": "eu", "channel": "web", "platform": "android"},
    start=T0 + timedelta(days=DAYS - 1, hours=19),
    duration=timedelta(minutes=30),
    magnitude=9.5,
)


def metric_total(detector_url: str, name: str, label: str = "") -> float:
    """The sum of a metric's series (those with ``label``, e.g. ``reason="x"``)."""
    text = httpx.get(detector_url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{")) and label in line
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


def start_detector(stack: Stack, bootstrap: str) -> tuple[Service, Topics]:
    stack.env.update(
        {
            "OPSWATCH_KAFKA_PARTITIONS": str(PARTITIONS),
            "OPSWATCH_IDLE_TIMEOUT": f"PT{IDLE_S}S",
        }
    )
    topics = Topics(stack.namespace)
    ensure_topics(KafkaConnection(bootstrap), topics, PARTITIONS)
    return stack.start("detector", health=None), topics


def judged(stack: Stack, detector: Service, topics: Topics, bootstrap: str, end: str) -> str:
    """Until the detector has judged the windows up to 15 minutes before ``end`` (the
    last one that closes without a replay's end of input: the lateness holds the one
    after it open) and published their alerts; that time."""
    until = datetime.fromisoformat(end) - timedelta(minutes=15)
    stack.wait(lambda: judged_until(detector.url) >= until.timestamp(), 240)
    group = f"{stack.namespace}-detector"
    stack.wait(lambda: lag(bootstrap, group, [topics.reports]) == 0, 60)
    return until.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.seconds(130)
def test_a_backfill_written_topic_after_topic_gives_the_replays_alerts(
    stack: Stack, bootstrap: str
) -> None:
    sim = Simulator(T0, timedelta(days=DAYS), seed=7, sessions_per_minute=8, incidents=[SPIKE])
    events = list(sim.events())
    source = stack.tmp / "backfill.ndjson"
    to_file(events, source)
    detector, topics = start_detector(stack, bootstrap)
    clock = time.monotonic()
    for i, (etype, topic) in enumerate(topics.events.items()):
        if i:
            time.sleep(GAP_S)  # the producer pauses: the topics read so far go quiet
        produce(bootstrap, topic, (e for e in events if e["type"] == etype))
    before = judged(stack, detector, topics, bootstrap, max(e["ts"] for e in events))
    seconds = time.monotonic() - clock

    assert metric_total(detector.url, "opswatch_detector_late_events_total") == 0
    assert metric_total(detector.url, "opswatch_detector_events_processed_total") == len(events)
    expected = identities(replayed(source, stack.tmp), before)
    assert expected, "the replay raises no alert: the test would prove nothing"
    assert identities(published(bootstrap, topics.alerts), before) == expected
    print(f"backfill of {len(events)} events judged in {seconds:.0f} s")


@pytest.mark.seconds(120)
def test_every_topic_written_as_events_happen_one_per_record_gives_the_replays_alerts(
    stack: Stack, bootstrap: str
) -> None:
    """A company's services writing as events happen: the three topics interleaved in
    event time, one event per record over both partitions, and a record that is not
    JSON among them. The detector reads records of every topic and partition together:
    no event late or counted twice, the replay's alerts, and the bad record
    dead-lettered with its own partition and offset."""
    sim = Simulator(T0, timedelta(days=DAYS), seed=7, sessions_per_minute=8, incidents=[SPIKE])
    events = sorted(sim.events(), key=event_time)
    source = stack.tmp / "live.ndjson"
    to_file(events, source)
    detector, topics = start_detector(stack, bootstrap)
    prod = producer(KafkaConnection(bootstrap), "live")
    try:
        for i, event in enumerate(events):
            topic = topics.events[event["type"]]
            prod.send(topic, key=partition_key(event), value=orjson.dumps(event))
            if i == len(events) // 2:
                bad = prod.send(topic, key=partition_key(event), value=b"{not json").get(30)
        prod.flush()
    finally:
        prod.close()
    before = judged(stack, detector, topics, bootstrap, max(e["ts"] for e in events))

    assert metric_total(detector.url, "opswatch_detector_late_events_total") == 0
    assert metric_total(detector.url, "opswatch_detector_events_processed_total") == len(events)
    expected = identities(replayed(source, stack.tmp), before)
    assert expected, "the replay raises no alert: the test would prove nothing"
    assert identities(published(bootstrap, topics.alerts), before) == expected
    consumer = KafkaConsumer(
        topics.deadletter,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        dead = [(r.value, dict(r.headers)) for r in consumer]
    finally:
        consumer.close()
    assert dead == [(b"{not json", dead[0][1])]
    assert (dead[0][1]["topic"], dead[0][1]["partition"], dead[0][1]["offset"]) == (
        bad.topic.encode(),
        str(bad.partition).encode(),
        str(bad.offset).encode(),
    )


@pytest.mark.seconds(90)
def test_a_topic_whose_producer_stops_for_a_while_raises_no_alert_from_its_gap(
    stack: Stack, bootstrap: str
) -> None:
    """The activity producer stops half way while the others write on, until the
    detector has taken it for idle and judged six hours past the stop without it,
    then writes the rest."""
    events = list(Simulator(T0, timedelta(days=2), seed=11, sessions_per_minute=8).events())
    source = stack.tmp / "stopped.ndjson"
    to_file(events, source)
    detector, topics = start_detector(stack, bootstrap)
    middle = T0 + timedelta(days=1, hours=12)
    later = [e for e in events if e["type"] == "activity" and event_time(e) >= middle.timestamp()]
    stopped = {e["event_id"] for e in later}
    for etype, topic in topics.events.items():
        produce(
            bootstrap,
            topic,
            (e for e in events if e["type"] == etype and e["event_id"] not in stopped),
        )
    # windows after the stop are judged only once the activity is taken for idle
    past = (middle + timedelta(hours=6)).timestamp()
    stack.wait(lambda: judged_until(detector.url) >= past, 180)
    produce(bootstrap, topics.events["activity"], later)
    before = judged(stack, detector, topics, bootstrap, max(e["ts"] for e in events))

    mine = identities(published(bootstrap, topics.alerts), before)
    assert mine <= identities(replayed(source, stack.tmp), before), "alerts from the gap"
    # what the gap held came back late: counted, and what needs activity was not judged
    assert metric_total(detector.url, "opswatch_detector_late_events_total") > 0
    unjudged = "opswatch_detector_unjudged_slice_windows"
    assert metric_total(detector.url, unjudged, 'reason="idle_source"') > 0


@pytest.mark.seconds(45)
def test_a_topic_nobody_writes_to_holds_a_backfill_back_only_so_long(
    stack: Stack, bootstrap: str
) -> None:
    """A shop that sends orders and activity but no feedback backfills a day: the
    feedback topic, never heard from, stops holding the watermark back after
    OPSWATCH_UNHEARD_TIMEOUT, and the day is judged without the feedback metrics."""
    events = [
        e
        for e in Simulator(T0, timedelta(days=1), seed=5, sessions_per_minute=8).events()
        if e["type"] != "feedback"
    ]
    stack.env["OPSWATCH_UNHEARD_TIMEOUT"] = "PT15S"
    detector, topics = start_detector(stack, bootstrap)
    for etype in ("order", "activity"):
        produce(bootstrap, topics.events[etype], (e for e in events if e["type"] == etype))
    judged(stack, detector, topics, bootstrap, max(e["ts"] for e in events))

    assert metric_total(detector.url, "opswatch_detector_events_processed_total") == len(events)
    assert metric_total(detector.url, "opswatch_detector_late_events_total") == 0
    unjudged = "opswatch_detector_unjudged_slice_windows"
    assert metric_total(detector.url, unjudged, 'reason="idle_source"') > 0


@pytest.mark.seconds(60)
def test_metric_events_beside_a_backfill_move_none_of_its_alerts(
    stack: Stack, bootstrap: str
) -> None:
    """Samples of two metric names every five minutes in two slices, written first,
    then the other topics: none of them late, the catalog's alerts those of the replay
    of the same file, a third name beyond OPSWATCH_MAX_METRIC_NAMES dead-lettered, and
    each series taken judged in stage two: tracked, its KPIs on the gauges."""
    events = list(Simulator(T0, timedelta(days=1), seed=5, sessions_per_minute=8).events())
    samples = [
        {
            "type": "metric",
            "event_id": f"{name}-{region}-{minute}",
            "ts": (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
            "name": name,
            "value": float(minute % 11),
            "region": region,
        }
        for minute in range(0, 24 * 60, 5)
        for name in ("stock_level", "delivery_minutes", "refund_count")
        for region in ("eu", "na")
    ]
    source = stack.tmp / "with-metrics.ndjson"
    to_file(sorted(events + samples, key=event_time), source)
    stack.env["OPSWATCH_MAX_METRIC_NAMES"] = "2"
    detector, topics = start_detector(stack, bootstrap)
    produce(bootstrap, topics.events["metric"], samples)
    for etype in ("order", "activity", "feedback"):
        produce(bootstrap, topics.events[etype], (e for e in events if e["type"] == etype))
    before = judged(stack, detector, topics, bootstrap, max(e["ts"] for e in events))

    assert metric_total(detector.url, "opswatch_detector_late_events_total") == 0
    taken = metric_total(detector.url, "opswatch_detector_events_processed_total", '"metric"')
    refused = metric_total(
        detector.url, "opswatch_detector_deadlettered_total", 'reason="metric_names"'
    )
    # each detector partition takes the first two names it reads: the third is refused
    assert taken == len(samples)
    assert refused == sum(s["name"] == "refund_count" for s in samples)
    dead = published(bootstrap, topics.deadletter)
    assert {e["name"] for e in dead} == {"refund_count"}
    expected = identities(replayed(source, stack.tmp), before)
    assert identities(published(bootstrap, topics.alerts), before) == expected
    scraped = httpx.get(detector.url + "/metrics", timeout=5).text
    for name, region in itertools.product(("stock_level", "delivery_minutes"), ("eu", "na")):
        assert f'opswatch_kpi_observed{{metric="{name}",slice="region={region}"}}' in scraped
    # the slices and series a replay tracks: four series (two names in two regions)
    with source.open("rb") as lines:
        stats = replay(lines, io.BytesIO(), load_catalog(), EngineSettings(max_metric_names=2))
    assert stats.tracked_series == 4
    tracked = metric_total(detector.url, "opswatch_detector_tracked_slices")
    assert tracked == stats.tracked_slices + stats.tracked_series
