"""Kafka plumbing shared by the services: topics, producers, a reachability probe.
Every client is built from the one KafkaConnection (``connection``)."""

from __future__ import annotations

import contextlib
import logging
import time
from functools import lru_cache

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    InvalidConfigurationError,
    InvalidReplicationFactorError,
    KafkaError,
    PolicyViolationError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import murmur2

from .connection import KafkaConnection
from .events import Topics

log = logging.getLogger(__name__)


def admin_client(kafka: KafkaConnection, client_id: str, **options: object) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka.client(client_id=client_id, **options))


def ensure_topics(
    kafka: KafkaConnection,
    topics: Topics,
    partitions: int,
    timeout_s: float = 30.0,
    single: tuple[str, ...] = (),
    also_check: tuple[str, ...] = (),
) -> None:
    """Create opswatch's topics if they are missing (existing ones are left alone)
    and wait until every partition of them has a leader.

    The event topics and the partials topic share one partition count:
    a leaf slice's orders, activity, feedback and metrics land on the same partition
    number and so on the same detector worker. Topics are created with the
    connection's replication factor and min.insync.replicas, as are those of
    ``single`` (one partition each); existing ones (and those of ``also_check``
    that exist) that differ are named in a TopicLayoutError.
    """
    wanted = [*topics.all(), *single]
    admin = admin_client(kafka, "opswatch-admin")
    try:
        existing = set(admin.list_topics())
        compacted = {"cleanup.policy": "compact"}
        missing = [
            NewTopic(
                name,
                1 if name in (topics.reports, topics.calendar) or name in single else partitions,
                kafka.replicas,
                topic_configs={
                    **kafka.topic_configs(),
                    **(compacted if name == topics.calendar else {}),
                },
            )
            for name in wanted
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                _create(admin, kafka, missing)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        _await_leaders(admin, wanted, timeout_s)
        _check_layout(admin, topics, partitions)
        _check_replication(admin, kafka, [*wanted, *(t for t in also_check if t in existing)])
    finally:
        admin.close()


class TopicLayoutError(RuntimeError):
    """Existing topics whose partition count or replication is not the configured one."""


def _create(admin: KafkaAdminClient, kafka: KafkaConnection, missing: list[NewTopic]) -> None:
    try:
        admin.create_topics(missing)
    except (InvalidReplicationFactorError, InvalidConfigurationError, PolicyViolationError):
        names = ", ".join(t.name for t in missing)
        raise TopicLayoutError(
            f"the cluster refused to create {names} with OPSWATCH_KAFKA_REPLICATION_FACTOR="
            f"{kafka.replicas} and OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS="
            f"{kafka.min_insync_replicas or 'the broker default'} (more replicas than brokers?)"
        ) from None


def _check_replication(admin: KafkaAdminClient, kafka: KafkaConnection, names: list[str]) -> None:
    """Topics whose replication factor or min.insync.replicas is not the one set
    (nothing is checked for a setting left unset)."""
    problems = []
    factor, isr = kafka.replication_factor, kafka.min_insync_replicas
    if factor is not None:
        wrong = sorted(
            (t["name"], len(t["partitions"][0]["replica_nodes"]))
            for t in admin.describe_topics(names)
            if t["partitions"] and len(t["partitions"][0]["replica_nodes"]) != factor
        )
        if wrong:
            found = ", ".join(f"{name} has {n}" for name, n in wrong)
            problems.append(f"OPSWATCH_KAFKA_REPLICATION_FACTOR is {factor} but {found} replicas")
    if isr is not None:
        key = "min.insync.replicas"
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, configs={key: None}) for n in names
        ]
        found_isr = admin.describe_configs(resources, config_filter="all").get("topic", {})
        wrong_isr = sorted(
            (name, configs[key]["value"])
            for name, configs in found_isr.items()
            if configs[key]["value"] != str(isr)
        )
        if wrong_isr:
            found = ", ".join(f"{name} has {v}" for name, v in wrong_isr)
            problems.append(
                f"OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS is {isr} but {found} as min.insync.replicas"
            )
    if problems:
        raise TopicLayoutError(
            "; ".join(problems) + ": change those topics (kafka-reassign-partitions, "
            "kafka-configs --alter) or the setting"
        )


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


def producer(kafka: KafkaConnection, client_id: str) -> KafkaProducer:
    """A durable producer: every in-sync replica acknowledges, retried, compressed."""
    return KafkaProducer(
        **kafka.client(
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
    )


def reachable(kafka: KafkaConnection, timeout_s: float = 3.0) -> bool:
    try:
        admin = admin_client(
            kafka,
            "opswatch-probe",
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
