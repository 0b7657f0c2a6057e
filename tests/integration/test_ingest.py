"""POST /v1/events against the real broker: produced, keyed by slice, rejects dead-lettered."""

from __future__ import annotations

import gzip
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import orjson
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from services.common.events import Topics
from services.common.kafka import slot
from tests.factories import event, stored
from tests.integration.conftest import Stack

JSON = {"content-type": "application/json"}


def partition_of(key: bytes, bootstrap: str, topic: str) -> int:
    """Where a record with ``key`` alone would go (``slot`` agrees with kafka-python's
    own partitioner: tests/unit/test_batches.py)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = len(consumer.partitions_for_topic(topic) or ())
    finally:
        consumer.close()
    return slot(key, partitions)


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
    assert stored(orders[0].value) == [good[0]]
    # a batch record goes to the partition its events' slice key goes to
    assert orders[0].partition == partition_of(b"eu|web|ios", bootstrap, orders[0].topic)
    feedback = consume(bootstrap, topics.events["feedback"], 1)
    assert feedback[0].partition == partition_of(b"us|web|ios", bootstrap, feedback[0].topic)
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
    gzipped = httpx.post(
        ingest.url + "/v1/events",
        content=gzip.compress(orjson.dumps([event()])),
        headers={**JSON, "content-encoding": "gzip"},
    )
    assert gzipped.status_code == 415
    assert gzipped.headers["accept-encoding"] == "identity"
    assert gzipped.json()["detail"] == "send the body unencoded (identity), not gzip"
    metrics = httpx.get(ingest.url + "/metrics").text
    assert 'opswatch_ingest_events_received_total{type="activity"} 5.0' in metrics


def test_oversized_deep_and_long_input_is_refused_clearly(stack: Stack) -> None:
    stack.env["OPSWATCH_INGEST_MAX_BYTES"] = "20000"
    ingest = stack.start("ingest", "/readyz")
    url = ingest.url + "/v1/events"
    big = httpx.post(url, content=orjson.dumps([event()] * 200), headers=JSON)
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"
    deep: dict[str, object] = {"v": 1}
    for _ in range(10):
        deep = {"x": deep}
    batch = [event(attributes=deep), event("feedback", text="y" * 9000), event()]
    resp = httpx.post(url, content=orjson.dumps(batch), headers=JSON)
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (1, 2)
    assert "nested deeper than 8 levels" in body["errors"][0]["message"]
    assert body["errors"][1]["field"] == "text"
    text = httpx.get(ingest.url + "/metrics").text
    assert 'opswatch_ingest_events_rejected_total{reason="limits",type="activity"} 1.0' in text


def test_an_event_over_kafkas_record_limit_is_refused_and_the_rest_accepted(
    stack: Stack, bootstrap: str
) -> None:
    ingest = stack.start("ingest", "/readyz")
    huge = event("order", pad=["x" * 1000] * 1200)  # 1.2 MB: more than a Kafka record takes
    size = len(orjson.dumps(huge))
    resp = httpx.post(
        ingest.url + "/v1/events",
        content=orjson.dumps([event("order"), huge, event("activity")]),
        headers=JSON,
    )
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["message"] == f"{size} bytes; at most 512000"
    dead = consume(bootstrap, Topics(stack.namespace).deadletter, 1)
    headers = dict(dead[0].headers)
    assert headers["reason"] == b"limits"
    assert headers["truncated"] == str(size).encode()
    assert dead[0].value == orjson.dumps(huge)[: 64 << 10]


def test_a_record_the_broker_refuses_as_too_large_is_not_answered_retry_later(
    stack: Stack, bootstrap: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    small = {"max.message.bytes": "100000"}  # a broker taking less than ingest sends
    try:
        admin.create_topics(
            [NewTopic(Topics(stack.namespace).deadletter, 1, 1, topic_configs=small)]
        )
    finally:
        admin.close()
    ingest = stack.start("ingest", "/readyz")
    # invalid, and its dead letter 200 kB even compressed
    refused = event("order", amount="x", pad=[secrets.token_hex(500) for _ in range(400)])
    resp = httpx.post(ingest.url + "/v1/events", content=orjson.dumps([refused]), headers=JSON)
    assert resp.status_code == 413
    assert resp.json()["title"] == "Record too large for the event store"
    assert "retry-after" not in resp.headers


def stall(url: str, declared: int, sent: bytes) -> socket.socket:
    """A POST /v1/events that declares ``declared`` bytes, sends ``sent`` and waits."""
    where = urlsplit(url)
    conn = socket.create_connection((where.hostname or "", where.port or 80))
    conn.sendall(
        b"POST /v1/events HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\n"
        + f"content-length: {declared}\r\n\r\n".encode()
        + sent
    )
    return conn


def test_a_stalled_upload_is_answered_408_and_frees_its_slot(stack: Stack) -> None:
    stack.env["OPSWATCH_INGEST_BODY_TIMEOUT"] = "PT1S"
    stack.env["OPSWATCH_INGEST_MAX_INFLIGHT"] = "1"
    ingest = stack.start("ingest", "/readyz")
    started = time.monotonic()
    conn = stall(ingest.url, 1000, b'[{"type":"ord')
    conn.settimeout(10)
    answer = b""
    while chunk := conn.recv(65536):  # the server closes the connection after its answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"content-type: application/problem+json" in head.lower()
    assert orjson.loads(body)["title"] == "Request body too slow"
    assert time.monotonic() - started < 5
    resp = httpx.post(ingest.url + "/v1/events", content=orjson.dumps([event()]), headers=JSON)
    assert resp.status_code == 202  # the one in-flight slot is free again
    conn.close()
    # a slow upload that keeps sending is read, however long it takes in all
    body = orjson.dumps([event()])
    slow = stall(ingest.url, len(body), body[:10])
    for at in range(10, len(body), 10):
        time.sleep(0.3)  # well within the timeout each time; seconds in all
        slow.sendall(body[at : at + 10])
    slow.settimeout(10)
    assert slow.recv(65536).startswith(b"HTTP/1.1 202 ")
    slow.close()


def test_millions_of_tiny_items_are_refused_at_once(stack: Stack) -> None:
    ingest = stack.start("ingest", "/readyz")
    body = b"[" + b",".join([b"1"] * 4_900_000) + b"]"  # 9.8 MB, under the byte limit
    started = time.monotonic()
    resp = httpx.post(ingest.url + "/v1/events", content=body, headers=JSON, timeout=60)
    assert resp.status_code == 413
    assert resp.json()["detail"] == "at most 10000 events per request, got 4900000"
    assert time.monotonic() - started < 10  # it was 17 to 53 s, the service blocked meanwhile


def test_an_event_nested_too_deep_to_write_again_is_rejected_alone(
    stack: Stack, bootstrap: str
) -> None:
    ingest = stack.start("ingest", "/readyz")
    deep = event("order")
    deep["attributes"] = orjson.Fragment(b'{"x":' * 1000 + b"1" + b"}" * 1000)
    resp = httpx.post(
        ingest.url + "/v1/events",
        content=orjson.dumps([event("order"), deep, event("order")]),
        headers=JSON,
    )
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["message"] == "nested deeper than 8 levels"
    dead = consume(bootstrap, Topics(stack.namespace).deadletter, 1)
    assert dict(dead[0].headers)["reason"] == b"limits"


def test_a_client_gone_mid_body_is_one_line_of_log_not_a_traceback(stack: Stack) -> None:
    ingest = stack.start("ingest", "/readyz")
    stall(ingest.url, 1000, b'[{"type":"ord').close()
    stack.wait(lambda: "went away" in ingest.tail(), 10)
    time.sleep(0.5)  # whatever else the server would log of it
    log = ingest.log.read_text()
    assert log.count("INFO services.ingest.api.events: a client went away after") == 1
    assert "Traceback" not in log and "ERROR" not in log
    resp = httpx.post(ingest.url + "/v1/events", content=orjson.dumps([event()]), headers=JSON)
    assert resp.status_code == 202


def test_a_retried_post_with_its_idempotency_key_is_not_produced_twice(
    stack: Stack, bootstrap: str
) -> None:
    ingest = stack.start("ingest", "/readyz")
    url = ingest.url + "/v1/events"
    batch = orjson.dumps([event("order"), event("order")])
    headers = {**JSON, "idempotency-key": "k-1"}
    with ThreadPoolExecutor(2) as pool:  # the same retry twice at once
        first, again = pool.map(lambda _: httpx.post(url, content=batch, headers=headers), [0, 1])
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    replayed = sorted(str(r.headers.get("idempotent-replayed")) for r in (first, again))
    assert replayed == ["None", "true"]  # one was produced, the other waited for its answer
    other = httpx.post(
        url, content=orjson.dumps([event("order")]), headers={**JSON, "idempotency-key": "k-1"}
    )
    assert other.status_code == 422 and other.json()["title"] == "Idempotency-Key reused"
    utf8 = {"content-type": "Application/JSON; charset=UTF-8", "idempotency-key": "k-1"}
    same = httpx.post(url, content=batch, headers=utf8)  # the same media type, spelt otherwise
    assert same.status_code == 202 and same.headers["idempotent-replayed"] == "true"
    ascii_ = {"content-type": "application/json; charset=us-ascii", "idempotency-key": "k-1"}
    same = httpx.post(url, content=batch, headers=ascii_)  # ASCII text is UTF-8 text
    assert same.status_code == 202 and same.headers["idempotent-replayed"] == "true"
    latin1 = {"content-type": "application/json; charset=iso-8859-1", "idempotency-key": "k-2"}
    refused = httpx.post(url, content=batch, headers=latin1)
    assert refused.status_code == 415
    assert refused.json()["detail"] == "only UTF-8, not 'iso-8859-1'"
    orders = consume(bootstrap, Topics(stack.namespace).events["order"], 3, timeout_s=5)
    assert len([e for r in orders for e in stored(r.value)]) == 2


def test_metric_events_go_to_their_topic_and_bad_ones_are_dead_lettered(
    stack: Stack, bootstrap: str
) -> None:
    stack.env["OPSWATCH_MAX_METRIC_NAMES"] = "2"
    ingest = stack.start("ingest", "/readyz")
    good = [
        event("metric", name="stock_level", value=40.0),
        event("metric", name="delivery_minutes", value=31.5, region="us"),
        event("metric", name="stock_level", value=38),
    ]
    third_name = event("metric", name="refund_count", value=2.0)
    bad_name = event("metric", name="Stock-Level")
    huge = event("metric", value=1e300)  # JSON has no NaN: beyond the bound is what is left
    resp = httpx.post(
        ingest.url + "/v1/events",
        content=orjson.dumps([good[0], bad_name, good[1], third_name, huge, good[2]]),
        headers=JSON,
    )
    assert resp.status_code == 202
    body = resp.json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "name"),
        (3, "name"),
        (4, "value"),
    ]

    topics = Topics(stack.namespace)
    assert topics.events["metric"] == f"{stack.namespace}.events.metrics"
    records = consume(bootstrap, topics.events["metric"], 2)
    assert sorted(e["event_id"] for r in records for e in stored(r.value)) == sorted(
        e["event_id"] for e in good
    )
    dead = consume(bootstrap, topics.deadletter, 3)
    reasons = {orjson.loads(d.value)["event_id"]: dict(d.headers)["reason"] for d in dead}
    assert reasons == {
        bad_name["event_id"]: b"schema",
        third_name["event_id"]: b"metric_names",
        huge["event_id"]: b"schema",
    }
    scraped = httpx.get(ingest.url + "/metrics").text
    assert (
        'opswatch_ingest_events_rejected_total{reason="metric_names",type="metric"} 1.0' in scraped
    )
    assert 'opswatch_ingest_events_received_total{type="metric"} 3.0' in scraped
