"""Alert updates in (from Kafka or, embedded, from the engine), rows in the store out."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from services.alerting.book import AlertBook
from services.alerting.metrics import Metrics
from services.common.contracts import Alert
from services.common.events import Topics

log = logging.getLogger(__name__)


class AlertIntake:
    """Validates detector updates and hands them to the book; counts the outcomes."""

    def __init__(self, book: AlertBook, metrics: Metrics) -> None:
        self.book = book
        self.metrics = metrics

    def handle(self, alert: Mapping[str, Any]) -> str:
        try:
            Alert.model_validate(alert)
        except ValidationError as exc:
            log.warning("invalid alert update dropped: %s", exc.errors()[0]["msg"])
            self.metrics.updates.labels("invalid").inc()
            return "invalid"
        if self.book.ingest(alert) == "duplicate":
            self.metrics.updates.labels("duplicate").inc()
            return "duplicate"
        self.metrics.updates.labels("stored").inc()
        return "stored"

    def handle_bytes(self, value: bytes) -> str:
        try:
            alert = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("alert update that is not JSON dropped")
            self.metrics.updates.labels("invalid").inc()
            return "invalid"
        return self.handle(alert)


class KafkaAlertConsumer:
    """Reads opswatch.alerts in a thread; commits after the batch is in the store."""

    def __init__(self, bootstrap: str, topics: Topics, intake: AlertIntake) -> None:
        self._bootstrap = bootstrap
        self._topic = topics.alerts
        self._group = f"{topics.namespace}-alerting"
        self._intake = intake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-consumer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="opswatch-alerting",
            # new partitions (a scaled-out topic) join the assignment within seconds
            metadata_max_age_ms=10_000,
        )
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self._intake.handle_bytes(record.value)
                if batches:
                    consumer.commit()
        finally:
            consumer.close()
