"""Kafka plumbing shared by the services: topics, producers, a reachability probe."""

from __future__ import annotations

import contextlib
import logging

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from .events import Topics

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, topics: Topics, partitions: int, replication: int = 1) -> None:
    """Create opswatch's topics if they are missing (existing ones are left alone).

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
    finally:
        admin.close()


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
    )


def reachable(bootstrap: str, timeout_s: float = 3.0) -> bool:
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="opswatch-probe",
            request_timeout_ms=int(timeout_s * 1000),
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
