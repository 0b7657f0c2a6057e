"""Kafka plumbing shared by the services: topics, producers, a reachability probe."""

from __future__ import annotations

import contextlib
import logging
import time
from functools import lru_cache

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from .events import Topics

log = logging.getLogger(__name__)


def ensure_topics(
    bootstrap: str,
    topics: Topics,
    partitions: int,
    replication: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create opswatch's topics if they are missing (existing ones are left alone)
    and wait until every partition of them has a leader.

    The three event topics and the partials topic share one partition count:
    a leaf slice's orders, activity and feedback land on the same partition
    number and so on the same detector worker.
    """
    wanted = topics.all()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="opswatch-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, 1 if name == topics.reports else partitions, replication)
            for name in wanted
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        _await_leaders(admin, wanted, timeout_s)
        _check_layout(admin, topics, partitions)
    finally:
        admin.close()


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition count is not the configured one."""


def _check_layout(admin: KafkaAdminClient, topics: Topics, partitions: int) -> None:
    """The event topics and the partials topic must have exactly ``partitions``:
    the detector's stages address partitions by number, so a topic created with
    another count (or a setting changed after the fact) would stall it silently."""
    shared = [*topics.events.values(), topics.partials]
    wrong = {
        t["name"]: len(t["partitions"])
        for t in admin.describe_topics(shared)
        if len(t["partitions"]) != partitions
    }
    if wrong:
        found = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopicLayoutError(
            f"OPSWATCH_KAFKA_PARTITIONS is {partitions} but {found} partitions; set it to the "
            "topics' count, or use a new OPSWATCH_TOPIC_NAMESPACE for another layout"
        )


def _await_leaders(admin: KafkaAdminClient, names: list[str], timeout_s: float) -> None:
    """Return once every partition of ``names`` has a leader.

    A topic that was just created is briefly missing from the broker's metadata;
    a consumer group formed in that moment is assigned none of its partitions.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        waiting = sorted(
            t["name"]
            for t in admin.describe_topics(names)
            if t["error_code"] != 0
            or not t["partitions"]
            or any(p["leader_id"] < 0 for p in t["partitions"])
        )
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topics without a leader after {timeout_s:.0f} s: {waiting}")
        time.sleep(0.2)


@lru_cache(maxsize=1 << 16)
def slot(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner puts a record with ``key`` among ``partitions``
    (murmur2, as the Java client, kafka-python's producer and aiokafka's do)."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


def producer(bootstrap: str, client_id: str) -> KafkaProducer:
    """A durable producer: every in-sync replica acknowledges, retried, compressed."""
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        retries=10,
        retry_backoff_ms=200,
        compression_type="gzip",
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=15_000,
        max_block_ms=5_000,  # a send that finds no metadata (Kafka away) fails in 5 s
    )


def reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="opswatch-probe",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()
