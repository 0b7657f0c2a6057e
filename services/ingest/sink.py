"""Where accepted and rejected events go: Kafka, or a list in tests of the HTTP layer."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kafka.errors import KafkaError

from services.common.events import deadletter_headers
from services.common.kafka import producer, reachable

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

    def __init__(self, bootstrap: str, timeout_s: float = 15.0) -> None:
        self._bootstrap = bootstrap
        self._producer = producer(bootstrap, "opswatch-ingest")
        self._timeout_s = timeout_s
        self._ready_at = 0.0
        self._ready = False

    def send(self, records: Sequence[Record]) -> None:
        """All of ``records`` acknowledged within the timeout, or SinkUnavailableError."""
        deadline = time.monotonic() + self._timeout_s
        try:
            futures = [
                self._producer.send(r.topic, key=r.key, value=r.value, headers=list(r.headers))
                for r in records
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
            self._ready = reachable(self._bootstrap)
            self._ready_at = now
        return self._ready

    def close(self) -> None:
        self._producer.close(timeout=5)


def deadletter(topic: str, raw: bytes, reason: str, field: str, message: str) -> Record:
    return Record(topic, None, raw, tuple(deadletter_headers("ingest", reason, field, message)))
