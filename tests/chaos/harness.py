"""The fault tests' harness: a seeded input, real services in their own process
groups, faults, a drain, and the checks against a golden computation."""

from __future__ import annotations

import math
import os
import random
import signal
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from services.bench.services import Service, free_port
from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.events import Topics, event_time, leaf_of, partition_key
from services.common.kafka import ensure_topics
from services.common.simulator import Incident, Simulator
from services.detector.engine.aggregate import Acc, Aggregator
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from tests.factories import T0
from tests.integration.conftest import REPO, launch, wait_for

PARTITIONS = 4
IDLE_S = 30
SESSION_S = 6
WINDOW_S = 300
LATENESS_S = 120


# --- the input -------------------------------------------------------------------


# Twenty complaint spikes, each in a leaf slice of its own, 20 minutes apart after
# three and a half hours of history: about 105,000 events. One engine over this
# input opens 27 alerts, each in an anomaly's slice or one of its parents, while
# the anomaly lasts or in the window after (a spike in a small slice lifts its
# parents' evidence too); which alerts is the golden run's to say.
START, HOURS, RATE, DATA_SEED = T0 + timedelta(hours=6), 10.5, 75.0, 4
LEAVES = (
    ("eu", "app", "desktop"),
    ("na", "web", "desktop"),
    ("apac", "web", "ios"),
    ("eu", "web", "android"),
    ("na", "app", "desktop"),
    ("apac", "web", "desktop"),
    ("na", "partner", "desktop"),
    ("na", "web", "android"),
    ("apac", "app", "android"),
    ("na", "app", "ios"),
    ("eu", "web", "ios"),
    ("eu", "app", "android"),
    ("apac", "web", "android"),
    ("apac", "app", "ios"),
    ("na", "web", "ios"),
    ("eu", "web", "desktop"),
    ("na", "app", "android"),
    ("eu", "app", "ios"),
    ("latam", "web", "desktop"),
    ("apac", "app", "desktop"),
)
ANOMALIES = tuple(
    Incident(
        family="complaint",
        slice={"region": r, "channel": c, "platform": p},
        start=T0 + timedelta(hours=9.5, minutes=20 * i),
        duration=timedelta(minutes=5),
        magnitude=9.5,
    )
    for i, (r, c, p) in enumerate(LEAVES)
)


@dataclass
class Input:
    """Good events (each with a sequence number per Kafka key) and poison records."""

    events: list[dict[str, Any]]
    poison: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # topic, key, bytes
    order: list[int] = field(default_factory=list)  # >= 0: an event, < 0: poison ~index


POISON_KINDS: tuple[Callable[[dict[str, Any]], bytes], ...] = (
    lambda e: b'{"type": "order", "event_id": ',  # not JSON
    lambda e: b'{"type": "activity", "event_id": "\xff\xfe"}',  # not UTF-8
    lambda e: orjson.dumps({**e, "ts": 12}),  # schema
    lambda e: orjson.dumps({**e, "user_id": "u" * 20_000}),  # a huge string
    lambda e: orjson.dumps({**e, "attributes": _nested(40)}),  # deep nesting
)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


def build_input(rng: random.Random, poison_share: float) -> Input:
    """The anomalies' traffic, and poison records at random places (``rng``)."""
    sim = Simulator(START, timedelta(hours=HOURS), DATA_SEED, RATE, incidents=ANOMALIES)
    data = Input(list(sim.events()))
    seqs: dict[tuple[str, bytes], int] = defaultdict(int)
    for i, e in enumerate(data.events):
        key = (e["type"], partition_key(e))
        e["seq"] = seqs[key]
        seqs[key] += 1
        data.order.append(i)
        if rng.random() < poison_share:
            kind = POISON_KINDS[len(data.poison) % len(POISON_KINDS)]
            data.poison.append((e["type"], partition_key(e), kind(e)))
            data.order.append(-len(data.poison))
    return data


def topic_after_topic(data: Input, types: tuple[str, ...]) -> tuple[Input, list[slice]]:
    """The input as a backfill writes it: every record of one event type's topic (each
    in its order), then the next, in the order of ``types``; and each topic's part."""

    def topic(item: int) -> int:
        return types.index(data.events[item]["type"] if item >= 0 else data.poison[~item][0])

    order = sorted(data.order, key=topic)  # stable: each topic's records keep their order
    ends = [sum(topic(i) <= t for i in order) for t in range(len(types))]
    return Input(data.events, data.poison, order), [
        slice(a, b) for a, b in zip([0, *ends], ends, strict=False)
    ]


# --- Kafka -------------------------------------------------------------------------


def durable_producer(bootstrap: str) -> KafkaProducer:
    """Rides out a broker restart: idempotent, ordered, retried for two minutes."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=1,
        retries=2**31 - 1,
        retry_backoff_ms=250,
        delivery_timeout_ms=120_000,
        request_timeout_ms=10_000,
        linger_ms=5,
    )


def produce(
    bootstrap: str, topics: Topics, data: Input, part: slice = slice(None)
) -> dict[tuple[str, int, int], int]:
    """Produce the input's records in order: poison index by (topic, partition, offset)."""
    prod = durable_producer(bootstrap)
    poison_at: dict[int, Any] = {}
    try:
        for item in data.order[part]:
            if item >= 0:
                e = data.events[item]
                prod.send(topics.events[e["type"]], key=partition_key(e), value=orjson.dumps(e))
            else:
                kind, key, value = data.poison[~item]
                poison_at[~item] = prod.send(topics.events[kind], key=key, value=value)
        prod.flush(timeout=180)
    finally:
        prod.close(timeout=10)
    where = {i: f.get(timeout=1) for i, f in poison_at.items()}
    return {(m.topic, m.partition, m.offset): i for i, m in where.items()}


def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic, up to its end offsets as of now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                records += [
                    r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)]
                ]
        return records
    finally:
        consumer.close()


def lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Records of ``topics`` not yet committed by ``group`` (no offset: all of them)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group)[group]
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = consumer.end_offsets(tps)
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )
    finally:
        consumer.close()
        admin.close()


# --- services ----------------------------------------------------------------------


class Run:
    """One pipeline in a topic namespace of its own: services started in their own
    process groups, killed (only those) and started again."""

    def __init__(self, bootstrap: str, tmp: Path, name: str) -> None:
        self.ns = f"c{name}{uuid.uuid4().hex[:6]}"
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.topics = Topics(self.ns)
        self.db = tmp / f"{name}-alerts.db"
        self.env = {
            **os.environ,
            "OPSWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "OPSWATCH_KAFKA_PARTITIONS": str(PARTITIONS),
            "OPSWATCH_TOPIC_NAMESPACE": self.ns,
            "OPSWATCH_DETECTOR_APP_ID": f"{self.ns}-detector",
            "OPSWATCH_DATABASE_URL": f"sqlite:///{self.db}",
            "OPSWATCH_IDLE_TIMEOUT": f"PT{IDLE_S}S",
            "OPSWATCH_DETECTOR_SESSION_TIMEOUT": f"PT{SESSION_S}S",
            "PYTHONPATH": str(REPO),
            "OPSWATCH_LOG_LEVEL": "INFO",
        }
        self.services: dict[str, Service] = {}
        self.kills: dict[str, int] = defaultdict(int)
        ensure_topics(KafkaConnection(bootstrap), self.topics, PARTITIONS)

    def start(self, name: str, kind: str) -> Service:
        """Start (or start again, on the same port) service ``name`` running ``kind``."""
        old = self.services.get(name)
        env = {**self.env, "OPSWATCH_DETECTOR_DATA_DIR": str(self.tmp / f"{name}-data")}
        port = old.port if old else free_port()
        service = self.services[name] = launch(name, kind, port, env, self.tmp, "/metrics")
        return service

    def start_pipeline(
        self, data: Input, detectors: tuple[str, ...] = ("detector",), part: slice = slice(None)
    ) -> dict[tuple[str, int, int], int]:
        """Produce the input (or ``part`` of it), then start alerting and the detector
        workers named; where each poison record went."""
        poison_at = produce(self.bootstrap, self.topics, data, part)
        self.start("alerting", "alerting")
        for name in detectors:
            self.start(name, "detector")
        return poison_at

    def wait_consumed(self, share: float, total: int) -> None:
        """Until the detector group has committed ``share`` of the input's ``total`` records."""
        self.wait(lambda: 1.0 - self.events_lag() / total >= share, 600)

    def kill(self, name: str) -> None:
        """kill -9 the service's process group (which this run started)."""
        service = self.services[name]
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=30)
        self.kills[name] += 1

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.killpg(self.services[name].process.pid, sig)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def wait(self, check: Callable[[], bool], timeout_s: float) -> None:
        wait_for(check, timeout_s, list(self.services.values()))

    def detector_lag(self) -> int:
        t = self.topics
        return lag(
            self.bootstrap, f"{self.ns}-detector", [*t.events.values(), t.partials, t.reports]
        )

    def events_lag(self) -> int:
        return lag(self.bootstrap, f"{self.ns}-detector", self.topics.events.values())

    def alerting_lag(self) -> int:
        return lag(self.bootstrap, f"{self.ns}-alerting", [self.topics.alerts])

    def judged_until(self) -> dict[int, int]:
        """Per stage-two partition, the event time up to which its reports say it judged."""
        until: dict[int, int] = {}
        for r in read_all(self.bootstrap, self.topics.reports):
            msg = orjson.loads(r.value)
            if msg.get("k") == "hb":  # a heartbeat of a partition still waiting
                continue
            until[msg["src"]] = max(until.get(msg["src"], 0), msg["until"])
        return until

    def drain(self, final_until: int, timeout_s: float) -> None:
        """Until every window up to ``final_until`` is judged and every record of the
        detector's and the alerting service's topics is committed."""

        def done() -> bool:
            try:
                judged = self.judged_until()
                return (
                    len(judged) == PARTITIONS
                    and min(judged.values()) >= final_until
                    and self.detector_lag() == 0
                    and self.alerting_lag() == 0
                )
            except KafkaError:  # a broker starting again
                return False

        self.wait(done, timeout_s)

    def alerts(self) -> list[dict[str, Any]]:
        url = self.services["alerting"].url + "/v1/alerts"
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            page = httpx.get(url, params=params, timeout=10).json()
            items += page["items"]
            if not page["next_page_token"]:
                return items
            params["page_token"] = page["next_page_token"]

    def alert_rows(self) -> tuple[int, int]:
        with sqlite3.connect(self.db) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT id) FROM alerts").fetchone()
        return int(row[0]), int(row[1])


# --- golden computations and checks ------------------------------------------------


def final_until(bootstrap: str, topics: Topics) -> int:
    """The last window boundary every stage-two partition judges once the input has
    ended: the slowest event partition's newest event, less the lateness."""
    newest: dict[int, float] = {}
    for name in topics.events.values():
        for r in read_all(bootstrap, name):
            try:
                ts = event_time(orjson.loads(r.value))
            except Exception:  # a poison record carries no usable time
                continue
            newest[r.partition] = max(newest.get(r.partition, 0.0), ts)
    low = min(newest.values()) - LATENESS_S
    return int(low // WINDOW_S) * WINDOW_S


def golden_windows(data: Input, until: int) -> dict[tuple[int, str], Acc]:
    """Per (window, slice): the aggregates of one aggregator over the whole input."""
    settings = OpswatchSettings()
    agg = Aggregator(settings.catalog(), WINDOW_S, LATENESS_S)
    out: dict[tuple[int, str], Acc] = {}
    for e in data.events:
        agg.add(e, event_time(e), leaf_of(e))
        for window in agg.advance():
            for key, acc in window.partials.items():
                out[(window.start, key)] = acc
    assert agg.stats.late == 0 and agg.stats.duplicates == 0
    return {k: v for k, v in out.items() if k[0] < until}


def golden_alerts(data: Input) -> dict[str, dict[str, Any]]:
    """The first update of each alert one engine raises over the input, by alert id."""
    settings = OpswatchSettings()
    engine = Engine(settings.catalog(), settings.engine())
    alerts: dict[str, dict[str, Any]] = {}
    for e in data.events:
        engine.add(e, event_time(e), leaf_of(e))
        for a in engine.poll():
            alerts.setdefault(a["id"], a)
    return alerts


def kafka_windows(bootstrap: str, topics: Topics) -> tuple[dict[tuple[int, str], Acc], int]:
    """Per (window, slice): the partials stage one sent, each (source, window, slice)
    counted once; a partial sent again must be the same partial. And how many were."""
    sent: dict[tuple[int, int, str], bytes] = {}
    again = 0
    for r in read_all(bootstrap, topics.partials):
        msg = orjson.loads(r.value)
        if msg["k"] != "pb":
            continue
        for slice_key, acc in msg["a"].items():
            key = (msg["src"], msg["w"], slice_key)
            value = orjson.dumps(acc)
            again += key in sent
            first = sent.setdefault(key, value)
            assert first == value, (
                f"partial {key} sent twice, differently: {first!r} then {value!r}"
            )
    merged: dict[tuple[int, str], Acc] = {}
    catalog = load_catalog()
    for (_, w, s), value in sorted(sent.items()):
        acc = Acc.from_json(orjson.loads(value), catalog)
        if (w, s) in merged:
            merged[(w, s)].merge(acc)
        else:
            merged[(w, s)] = acc
    return merged, again


def same_aggregates(
    kafka: dict[tuple[int, str], Acc], golden: dict[tuple[int, str], Acc], until: int
) -> None:
    judged = {k: v for k, v in kafka.items() if k[0] < until}
    assert judged.keys() == golden.keys(), (
        f"windows only in Kafka: {sorted(judged.keys() - golden.keys())[:5]}, "
        f"only in the golden run: {sorted(golden.keys() - judged.keys())[:5]}"
    )
    for key, acc in golden.items():
        mine = judged[key]
        assert mine.distinct == acc.distinct, key
        assert all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
            for a, b in zip(mine.counts, acc.counts, strict=True)
        ), (key, mine.counts, acc.counts)


def no_sequence_gaps(bootstrap: str, topics: Topics) -> int:
    """Every key's events are in its topic with no sequence number missing (a key's
    last events missing would show as fewer in all): how many there are."""
    total = 0
    for name in topics.events.values():
        seqs: dict[bytes, set[int]] = defaultdict(set)
        for r in read_all(bootstrap, name):
            try:
                seqs[r.key].add(orjson.loads(r.value)["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # a poison record
        for key, seen in seqs.items():
            assert seen == set(range(len(seen))), f"{name} key {key!r}: a gap"
            total += len(seen)
    return total


def check(run: Run, data: Input, golden: set[str]) -> str:
    """R1's assertions, once the run has drained; what they found, for the summary."""
    until = final_until(run.bootstrap, run.topics)
    run.drain(until, 600)
    assert no_sequence_gaps(run.bootstrap, run.topics) == len(data.events)
    windows, again = kafka_windows(run.bootstrap, run.topics)
    same_aggregates(windows, golden_windows(data, until), until)
    alerts = run.alerts()
    rows, distinct = run.alert_rows()
    assert rows == distinct == len(alerts)
    assert {a["id"] for a in alerts} == golden
    return (
        f"events={len(data.events)} windows={len({w for w, _ in windows if w < until})} "
        f"golden; partials sent again={again}, all identical; alerts={len(alerts)} golden"
    )
