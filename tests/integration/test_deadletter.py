"""Poison records on the event topics: the detector writes each one, bytes intact,
to the dead-letter topic with why and where from, and goes on with the rest."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import orjson
from kafka import KafkaProducer

from services.common.connection import KafkaConnection
from services.common.events import Topics
from services.common.kafka import ensure_topics
from tests.factories import event, stored
from tests.integration.conftest import REPO, Stack
from tests.integration.test_end_to_end import processed
from tests.integration.test_ingest import consume


def test_poison_records_are_dead_lettered_with_their_origin(stack: Stack, bootstrap: str) -> None:
    detector = stack.start("detector", health=None)
    topics = Topics(stack.namespace)
    # not JSON; not an event; an event of year 9999 (a producer's wrong clock), which
    # would move the watermark past every window to come
    far = orjson.dumps(event("order", ts="9999-12-31T23:59:59Z"))
    poison = [b"{not json", orjson.dumps({"type": "order", "event_id": "p-1"}), far]
    good = [orjson.dumps(event("order")), orjson.dumps(event("order"))]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    written_ms = int(time.time() * 1000)  # each record a second after the one before
    for i, value in enumerate([good[0], *poison, good[1]]):
        producer.send(
            topics.events["order"],
            key=b"eu|web|ios",
            value=value,
            partition=0,
            timestamp_ms=written_ms + 1000 * i,
        )
    producer.flush()
    producer.close()
    stack.wait(lambda: processed(detector.url) >= 2, 120)
    dead = consume(bootstrap, topics.deadletter, 3)
    assert [r.value for r in dead] == poison
    headers = [dict(r.headers) for r in dead]
    assert [h["reason"] for h in headers] == [b"json", b"schema", b"future"]
    assert headers[1]["field"] == b"ts" and headers[1]["exception"] == b"EventError"
    assert headers[2]["field"] == b"ts"
    assert {h["topic"] for h in headers} == {topics.events["order"].encode()}
    assert [h["offset"] for h in headers] == [b"1", b"2", b"3"]
    assert [int(h["timestamp"]) for h in headers] == [written_ms + 1000 * i for i in (1, 2, 3)]
    assert all(h["source"] == b"detector" and h["partition"] == b"0" for h in headers)
    text = httpx.get(detector.url + "/metrics", timeout=5).text
    assert 'opswatch_detector_deadlettered_total{reason="json"} 1.0' in text


def _replay(stack: Stack, bootstrap: str, *args: str) -> str:
    env = {**stack.env, "OPSWATCH_KAFKA_BOOTSTRAP": bootstrap}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "deadletter", "replay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_fixed_dead_letters_are_replayed_once_per_reason(stack: Stack, bootstrap: str) -> None:
    topics = Topics(stack.namespace)
    ensure_topics(KafkaConnection(bootstrap), topics, 2)
    fixed, broken = event("order"), {"type": "order", "event_id": "still-bad"}
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value, reason in [(fixed, b"engine"), (broken, b"engine"), (event(), b"schema")]:
        producer.send(topics.deadletter, value=orjson.dumps(value), headers=[("reason", reason)])
    producer.flush()
    producer.close()
    dry = _replay(stack, bootstrap, "--reason", "engine", "--dry-run")
    assert "3 dead letters read, 2 with reason 'engine': would replay 1" in dry
    assert "1 still invalid, kept" in dry
    assert "replayed 1 (1 to " in _replay(stack, bootstrap, "--reason", "engine")
    assert "would replay 0" in _replay(stack, bootstrap, "--reason", "engine", "--dry-run")
    orders = consume(bootstrap, topics.events["order"], 2, timeout_s=5)
    assert [orjson.loads(r.value)["event_id"] for r in orders] == [fixed["event_id"]]
    assert "would replay 1" in _replay(stack, bootstrap, "--reason", "schema", "--dry-run")


def test_metric_events_refused_for_their_name_are_replayed_to_the_metric_topic(
    stack: Stack, bootstrap: str
) -> None:
    """Ingest refuses a second metric name with OPSWATCH_MAX_METRIC_NAMES=1; the dead
    letter replay (after the setting is raised) sends the refused event on, to the
    metric events' topic, where the detector applies its own bound."""
    stack.env["OPSWATCH_MAX_METRIC_NAMES"] = "1"
    ingest = stack.start("ingest", "/readyz")
    first, second = event("metric", name="stock_level"), event("metric", name="queue_length")
    resp = httpx.post(ingest.url + "/v1/events", content=orjson.dumps([first, second]))
    assert resp.json()["rejected"] == 1
    topics = Topics(stack.namespace)
    assert "would replay 1 (1 to " in _replay(
        stack, bootstrap, "--reason", "metric_names", "--dry-run"
    )
    assert "replayed 1 (1 to " in _replay(stack, bootstrap, "--reason", "metric_names")
    records = consume(bootstrap, topics.events["metric"], 2, timeout_s=5)
    taken = [e for r in records for e in stored(r.value)]
    assert [e["name"] for e in taken] == ["stock_level", "queue_length"]


def test_alert_updates_the_alerting_service_cannot_use_are_dead_lettered(
    stack: Stack, bootstrap: str
) -> None:
    alerting = stack.start("alerting")
    topics = Topics(stack.namespace)
    good = orjson.loads((REPO / "schemas/examples/valid/alert-firing.json").read_bytes())
    poison = [b"{not json", orjson.dumps({**good, "score": 7})]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in [*poison, orjson.dumps(good)]:
        producer.send(topics.alerts, key=good["fingerprint"].encode(), value=value)
    producer.flush()
    producer.close()
    dead = consume(bootstrap, topics.deadletter, 2)
    assert sorted(r.value for r in dead) == sorted(poison)
    headers = [dict(r.headers) for r in dead]
    assert {h["source"] for h in headers} == {b"alerting"}
    assert sorted(h["reason"] for h in headers) == [b"json", b"schema"]
    assert {h["topic"] for h in headers} == {topics.alerts.encode()}

    def stored() -> bool:
        found = httpx.get(f"{alerting.url}/v1/alerts/{good['id']}", timeout=5)
        return found.status_code == 200

    stack.wait(stored, 60)
    text = httpx.get(alerting.url + "/metrics", timeout=5).text
    assert 'opswatch_alerting_alert_updates_total{outcome="invalid"} 2.0' in text
