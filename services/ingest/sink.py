"""Where accepted and rejected events go: Kafka, or a list in tests of the HTTP layer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)

from services.common.connection import KafkaConnection
from services.common.events import batches, deadletter_headers
from services.common.kafka import producer, reachable, slot

log = logging.getLogger(__name__)

MARK = "opswatch-idempotency"  # header: `{Idempotency-Key}#{n}`, the request's n-th record
CLOCK_SKEW_S = 5.0  # how far a resumed attempt looks back before the first one's claim
MAX_EVENT_BYTES = 512_000  # well below Kafka's default 1 MB record limit
DEADLETTER_KEEP_BYTES = 64 << 10  # what a dead letter keeps of an event over MAX_EVENT_BYTES
TRUNCATED = "truncated"  # dead-letter header: the size in bytes of an event kept in part


Part = tuple[str, int | None, bytes, list[tuple[str, bytes]]]  # topic, partition, value, headers


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class SinkUnavailableError(Exception):
    """Kafka did not acknowledge; the client should retry later."""


class SinkRefusedError(Exception):
    """Kafka refused a record for good (too large for it): a retry would fail the same."""


class Sink(Protocol):
    def send(
        self, records: Sequence[Record], key: str | None = None, resume_since: float | None = None
    ) -> None: ...

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

    def send(
        self, records: Sequence[Record], key: str | None = None, resume_since: float | None = None
    ) -> None:
        """All of ``records`` acknowledged within the timeout, or SinkUnavailableError
        (SinkRefusedError when Kafka refuses a record as too large, for good).
        Keyed records (events) go as batch records, one or more per partition, each
        event to the partition its key alone would have gone to. With an
        Idempotency-Key each record carries it (header ``opswatch-idempotency``); when
        resuming an attempt begun at ``resume_since``, the records it produced are
        found in Kafka and not produced again."""
        deadline = time.monotonic() + self._timeout_s
        try:
            parts = self._parts(records)
            marks = [[(MARK, f"{key}#{n}".encode())] if key else [] for n in range(len(parts))]
            done = (
                self._produced(key, parts, resume_since, deadline)
                if key is not None and resume_since is not None
                else set()
            )
            futures = [
                self._producer.send(topic, value=value, partition=p, headers=[*headers, *mark])
                for n, ((topic, p, value, headers), mark) in enumerate(
                    zip(parts, marks, strict=True)
                )
                if n not in done
            ]
            self._producer.flush(timeout=self._timeout_s)
            for f in futures:
                f.get(timeout=max(0.0, deadline - time.monotonic()))
        except (MessageSizeTooLargeError, RecordListTooLargeError) as exc:
            log.warning("kafka refused a record of a batch as too large: %s", exc)
            raise SinkRefusedError(str(exc)) from exc
        except KafkaError as exc:
            log.warning("kafka did not acknowledge a batch: %s", exc)
            raise SinkUnavailableError(str(exc)) from exc

    def _parts(self, records: Sequence[Record]) -> list[Part]:
        """The Kafka records of a request, in an order its body alone decides: unkeyed
        ones as they come (the partitioner places them), then the batch records."""
        parts: list[Part] = []
        by_partition: dict[tuple[str, int], list[bytes]] = {}
        known: dict[str, list[int]] = {}
        for r in records:
            if r.key is None:
                parts.append((r.topic, None, r.value, list(r.headers)))
                continue
            if r.topic not in known:
                known[r.topic] = sorted(self._producer.partitions_for(r.topic))
            partitions = known[r.topic]
            by_partition.setdefault((r.topic, partitions[slot(r.key, len(partitions))]), []).append(
                r.value
            )
        for (topic, partition), values in by_partition.items():
            parts += [(topic, partition, batch, []) for batch in batches(values)]
        return parts

    def _produced(self, key: str, parts: Sequence[Part], since: float, deadline: float) -> set[int]:
        """Which of ``parts`` an attempt with ``key`` begun at ``since`` produced: read
        from that time (Kafka's timestamp index) to the end of each partition they go to."""
        tps: set[TopicPartition] = set()
        for topic, partition, _, _ in parts:
            places = self._producer.partitions_for(topic) if partition is None else {partition}
            tps |= {TopicPartition(topic, p) for p in places}
        consumer = KafkaConsumer(
            **self._kafka.client(
                client_id="opswatch-ingest-resume",
                enable_auto_commit=False,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
        )
        found: set[int] = set()
        try:
            consumer.assign(list(tps))
            starts = consumer.offsets_for_times(
                {tp: int((since - CLOCK_SKEW_S) * 1000) for tp in tps}
            )
            ends = consumer.end_offsets(list(tps))
            for tp in tps:
                start = starts.get(tp)
                consumer.seek(tp, start.offset if start is not None else ends[tp])
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise KafkaTimeoutError("reading back a resumed request's records")
                for batch in consumer.poll(timeout_ms=500).values():
                    for r in batch:
                        for name, value in r.headers or ():
                            owner, _, n = value.rpartition(b"#")
                            if name == MARK and owner == key.encode():
                                found.add(int(n))
        finally:
            consumer.close()
        log.info(
            "resuming request %r: %d of its %d records were produced", key, len(found), len(parts)
        )
        return found

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at > 5.0:
            self._ready = reachable(self._kafka)
            self._ready_at = now
        return self._ready

    def close(self) -> None:
        self._producer.close(timeout=5)


def deadletter(topic: str, raw: bytes, reason: str, field: str, message: str) -> Record:
    """A rejected event's record: its bytes, or for one over MAX_EVENT_BYTES (more than
    Kafka takes in a record) its first DEADLETTER_KEEP_BYTES and its size in header
    ``truncated``."""
    headers = deadletter_headers("ingest", reason, field, message)
    if len(raw) > MAX_EVENT_BYTES:
        headers.append((TRUNCATED, str(len(raw)).encode()))
        raw = raw[:DEADLETTER_KEEP_BYTES]
    return Record(topic, None, raw, tuple(headers))
