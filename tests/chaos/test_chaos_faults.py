"""Nothing lost, nothing twice: poison, a broker killed and started again, and ingest
killed or without a broker (the detector's own faults: test_chaos_workers.py)."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, text

from tests.chaos.conftest import SUMMARY, Broker
from tests.chaos.harness import (
    Input,
    Run,
    check,
    produce,
    read_all,
)
from tests.conftest import PostgresServer
from tests.factories import stored


@pytest.mark.seconds(170)
def test_r3_poison_is_dead_lettered_and_the_rest_is_golden(
    broker: Broker, tmp_path: Path, data: Input, golden: set[str]
) -> None:
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r3")
    try:
        poison_at = run.start_pipeline(data)
        detector = run.services["detector"]
        found_ok = check(run, data, golden)
        letters = read_all(broker.bootstrap, run.topics.deadletter)
        letter_at = {}
        for r in letters:
            h = {k: v.decode() for k, v in r.headers}
            letter_at[(h["topic"], int(h["partition"]), int(h["offset"]))] = (h, r.value)
        assert letter_at.keys() == poison_at.keys()
        assert len(letters) == len(data.poison)
        for where, i in poison_at.items():
            headers, value = letter_at[where]
            assert value == data.poison[i][2]
            assert headers["source"] == "detector" and headers["reason"] in {
                "json",
                "schema",
                "limits",
            }
            assert headers["exception"] and headers["message"]
        text = httpx.get(detector.url + "/metrics", timeout=5).text
        counted = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("opswatch_detector_deadlettered_total{")
        )
        assert counted == len(data.poison)
    finally:
        run.stop()
    SUMMARY.append(
        f"R3 no faults, 1% poison: {found_ok}; poison={len(data.poison)} "
        f"dead-lettered={len(letters)} with headers, counted; {time.monotonic() - clock:.0f} s"
    )


@pytest.mark.seconds(200)
def test_r5_kill_9_the_broker_mid_stream_and_start_it_again(
    broker: Broker, tmp_path: Path, data: Input, golden: set[str], rng: random.Random
) -> None:
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r5")
    total = len(data.order)
    half = total // 2
    at = rng.uniform(0.2, 0.45)
    try:
        run.start_pipeline(data, part=slice(0, half))
        run.wait_consumed(at, total)
        pool = ThreadPoolExecutor(1)  # a producer mid-stream when the broker dies
        rest = pool.submit(produce, broker.bootstrap, run.topics, data, slice(half, None))
        time.sleep(0.5)
        broker.kill()
        down_at = time.monotonic()
        time.sleep(3)
        broker.up()
        down_s = time.monotonic() - down_at
        rest.result(timeout=300)
        pool.shutdown()
        found_ok = check(run, data, golden)
    finally:
        run.stop()
    SUMMARY.append(
        f"R5 broker kill -9 at {at:.0%} while producing, back after {down_s:.0f} s: {found_ok}; "
        f"{time.monotonic() - clock:.0f} s"
    )


@pytest.mark.seconds(80)
def test_r4_kill_9_ingest_3_times_while_a_client_retries_with_idempotency_keys(
    broker: Broker, postgres: PostgresServer, tmp_path: Path, data: Input, rng: random.Random
) -> None:
    """Two ingest replicas sharing their Idempotency-Keys in PostgreSQL, behind a
    round-robin client; each kill hits the replica working on the client's request,
    once it has claimed the request's key. The retry lands on the other replica, which
    waits out the killed one's lease and produces only what it had not."""
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "r4")
    store = create_engine(postgres.database())
    run.env["OPSWATCH_DATABASE_URL"] = store.url.render_as_string(hide_password=False)
    run.env["OPSWATCH_INGEST_IDEMPOTENCY"] = "database"

    def claimed() -> bool:
        with store.connect() as conn:
            pending = text("SELECT count(*) FROM idempotency_keys WHERE answer IS NULL")
            return bool(conn.execute(pending).scalar())

    batches = [data.events[i : i + 500] for i in range(0, 20_000, 500)]
    acknowledged: list[str] = []
    kill_after = sorted(rng.sample(range(2, len(batches) - 2), 3))
    replicas = ("ingest-a", "ingest-b")
    try:
        urls = [run.start(name, "ingest").url for name in replicas]
        pool = ThreadPoolExecutor(1)
        addressed = [""]
        client = pool.submit(post_all, urls, batches, acknowledged, addressed)
        killed = []
        for after in kill_after:
            run.wait(lambda after=after: len(acknowledged) >= after * 500, 300)  # type: ignore[misc]
            deadline = time.monotonic() + 2
            while not claimed() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))  # before, while or after it produces
            victim = replicas[urls.index(addressed[0])]
            run.kill(victim)
            killed.append(victim)
            run.start(victim, "ingest")
        retries = client.result(timeout=600)
        pool.shutdown()
        ids = [
            e["event_id"]
            for name in run.topics.events.values()
            for r in read_all(broker.bootstrap, name)
            for e in stored(r.value)
        ]
        assert len(acknowledged) == 20_000
        assert sorted(ids) == sorted(acknowledged)  # each acknowledged event stored once
    finally:
        run.stop()
        store.dispose()
    resumed = [
        line.split("resuming request ")[1]
        for name in replicas
        for line in (tmp_path / f"{name}.log").read_text().splitlines()
        if "resuming request " in line
    ]
    SUMMARY.append(
        f"R4 two ingest replicas, kill -9 of {', '.join(killed)} after batches {kill_after} "
        f"of {len(batches)}: {len(acknowledged)} events acknowledged with 202, each stored "
        f"once in Kafka; {retries} retries (round robin); resumed: {'; '.join(resumed)}; "
        f"{time.monotonic() - clock:.0f} s"
    )


def post_all(
    urls: list[str],
    batches: list[list[dict[str, Any]]],
    acknowledged: list[str],
    addressed: list[str],
) -> int:
    """POST each batch with an Idempotency-Key until it is answered 202, each attempt to
    the next of ``urls`` in turn (``addressed[0]``: the one being asked); the retries."""
    retries = 0
    turn = 0
    with httpx.Client(timeout=10) as client:
        for i, batch in enumerate(batches):
            body = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in batch)
            headers = {"content-type": "application/x-ndjson", "idempotency-key": f"batch-{i}"}
            deadline = time.monotonic() + 180
            while True:
                url = addressed[0] = urls[turn % len(urls)]
                turn += 1
                try:
                    resp = client.post(url + "/v1/events", content=body, headers=headers)
                    if resp.status_code == 202:
                        assert resp.json()["accepted"] == len(batch)
                        acknowledged.extend(e["event_id"] for e in batch)
                        break
                    assert resp.status_code == 503, resp.text
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"batch {i} never acknowledged"
                retries += 1
                time.sleep(0.2)
    return retries


@pytest.mark.seconds(55)
def test_ingest_while_the_broker_is_down_answers_503_and_is_not_ready(
    broker: Broker, tmp_path: Path, data: Input
) -> None:
    clock = time.monotonic()
    run = Run(broker.bootstrap, tmp_path, "down")
    run.env["OPSWATCH_INGEST_MAX_INFLIGHT"] = "2"
    batch = b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in data.events[:100])
    headers = {"content-type": "application/x-ndjson"}
    try:
        url = run.start("ingest", "ingest").url
        assert httpx.post(url + "/v1/events", content=batch, headers=headers).status_code == 202
        broker.kill()
        with ThreadPoolExecutor(3) as pool:  # two in flight wait on Kafka; the third is refused
            answers = list(
                pool.map(
                    lambda _: httpx.post(
                        url + "/v1/events", content=batch, headers=headers, timeout=60
                    ),
                    range(3),
                )
            )
        for resp in answers:
            assert resp.status_code == 503
            assert resp.headers["content-type"] == "application/problem+json"
            assert int(resp.headers["retry-after"]) >= 1
        titles = sorted(r.json()["title"] for r in answers)
        assert titles.count("Too many requests in flight") >= 1
        run.wait(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 503, 30)
        broker.up()
        run.wait(lambda: httpx.get(url + "/readyz", timeout=10).status_code == 200, 60)
        post = partial(httpx.post, url + "/v1/events", content=batch, headers=headers, timeout=30)
        run.wait(lambda: post().status_code == 202, 90)
    finally:
        run.stop()
    SUMMARY.append(
        f"ingest with the broker killed: 503 + Retry-After ({', '.join(titles)}), /readyz 503, "
        f"then 202 once it is back; {time.monotonic() - clock:.0f} s"
    )
