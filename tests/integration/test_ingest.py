"""POST /v1/events against the real broker: produced, keyed by slice, rejects dead-lettered."""

from __future__ import annotations

import httpx
import orjson
from kafka import KafkaConsumer

from services.common.events import Topics
from tests.factories import event
from tests.integration.conftest import Stack


def consume(bootstrap: str, topic: str, expect: int, timeout_s: float = 20.0) -> list:  # type: ignore[type-arg]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


def test_valid_events_are_produced_and_rejects_dead_lettered(stack: Stack, bootstrap: str) -> None:
    ingest = stack.start("ingest", "/readyz")
    good = [event("order"), event("activity"), event("feedback", region="us")]
    bad = {"type": "order", "event_id": "x", "ts": "yesterday", "user_id": "u"}
    resp = httpx.post(
        ingest.url + "/v1/events",
        content=orjson.dumps([good[0], bad, good[1], good[2]]),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (3, 1)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["field"] == "ts"

    topics = Topics(stack.namespace)
    orders = consume(bootstrap, topics.events["order"], 1)
    assert orjson.loads(orders[0].value)["event_id"] == good[0]["event_id"]
    assert orders[0].key == b"eu|web|ios"
    feedback = consume(bootstrap, topics.events["feedback"], 1)
    assert feedback[0].key == b"us|web|ios"
    dead = consume(bootstrap, topics.deadletter, 1)
    assert orjson.loads(dead[0].value)["event_id"] == "x"
    headers = dict(dead[0].headers)
    assert headers["reason"] == b"schema"
    assert headers["field"] == b"ts"


def test_ndjson_is_accepted_and_other_media_types_refused(stack: Stack) -> None:
    ingest = stack.start("ingest", "/readyz")
    lines = b"\n".join(orjson.dumps(event("activity")) for _ in range(5)) + b"\n{oops\n"
    resp = httpx.post(
        ingest.url + "/v1/events", content=lines, headers={"content-type": "application/x-ndjson"}
    )
    assert resp.status_code == 202
    assert (resp.json()["accepted"], resp.json()["rejected"]) == (5, 1)
    refused = httpx.post(
        ingest.url + "/v1/events", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert refused.status_code == 415
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 415
    metrics = httpx.get(ingest.url + "/metrics").text
    assert 'opswatch_ingest_events_received_total{type="activity"} 5.0' in metrics
