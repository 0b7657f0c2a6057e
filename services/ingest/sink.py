"""Where accepted and rejected events go: Kafka, or a list in tests of the HTTP layer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kafka.errors import KafkaError

from services.common.connection import KafkaConnection
from services.common.events import batches, deadletter_headers
from services.common.kafka import producer, reachable, slot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class SinkUnavailableError(Exception):
    """Kafka did not acknowledge; the client should retry later."""


class Sink(Protocol):
    def send(self, records: Sequence[Record]) -> None: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


class KafkaSink:
    """Produces a request's records and waits until Kafka has acknowledged all of them."""

    def __init__(self, kafka: KafkaConnection, timeout_s: float = 15.0) -> None:
        self._kafka = kafka
        self._producer = producer(kafka, "opswatch-ingest")
        self._timeout_s = timeout_s
        self._ready_at = 0.0
        self._ready = False

    def send(self, records: Sequence[Record]) -> None:
        """All of ``records`` acknowledged within the timeout, or SinkUnavailableError.
        Keyed records (events) go as batch records, one or more per partition, each
        event to the partition its key alone would have gone to."""
        deadline = time.monotonic() + self._timeout_s
        try:
            futures = []
            by_partition: dict[tuple[str, int], list[bytes]] = {}
            known: dict[str, list[int]] = {}
            for r in records:
                if r.key is None:
                    futures.append(
                        self._producer.send(r.topic, value=r.value, headers=list(r.headers))
                    )
                else:
                    if r.topic not in known:
                        known[r.topic] = sorted(self._producer.partitions_for(r.topic))
                    partitions = known[r.topic]
                    where = (r.topic, partitions[slot(r.key, len(partitions))])
                    by_partition.setdefault(where, []).append(r.value)
            for (topic, partition), values in by_partition.items():
                futures += [
                    self._producer.send(topic, value=batch, partition=partition)
                    for batch in batches(values)
                ]
            self._producer.flush(timeout=self._timeout_s)
            for f in futures:
                f.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as exc:
            log.warning("kafka did not acknowledge a batch: %s", exc)
            raise SinkUnavailableError(str(exc)) from exc

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at > 5.0:
            self._ready = reachable(self._kafka)
            self._ready_at = now
        return self._ready

    def close(self) -> None:
        self._producer.close(timeout=5)


def deadletter(topic: str, raw: bytes, reason: str, field: str, message: str) -> Record:
    return Record(topic, None, raw, tuple(deadletter_headers("ingest", reason, field, message)))
