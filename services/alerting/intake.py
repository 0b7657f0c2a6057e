"""Alert updates in (from Kafka or, embedded, from the engine), rows in the store out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from services.alerting.book import AlertBook
from services.alerting.metrics import Metrics
from services.common.contracts import Alert
from services.common.events import Topics

log = logging.getLogger(__name__)
RETRIES = 4


class AlertIntake:
    """Validates detector updates and hands them to the book; counts the outcomes."""

    def __init__(self, book: AlertBook, metrics: Metrics) -> None:
        self.book = book
        self.metrics = metrics

    def handle(self, alert: Mapping[str, Any]) -> str:
        """Validate, normalise (times in one format) and apply one update. A store
        that fails is retried a few times, then the update is counted as failed."""
        try:
            update = Alert.model_validate(alert).model_dump(mode="json")
        except ValidationError as exc:
            log.warning("invalid alert update dropped: %s", exc.errors()[0]["msg"])
            self.metrics.updates.labels("invalid").inc()
            return "invalid"
        if update["status"] == "acknowledged":
            log.warning("alert update dropped: the detector never acknowledges")
            self.metrics.updates.labels("invalid").inc()
            return "invalid"
        for attempt in range(RETRIES + 1):
            try:
                change = self.book.ingest(update)
                break
            except Exception:
                if attempt == RETRIES:
                    log.exception("alert update %s could not be stored; skipped", update["id"])
                    self.metrics.updates.labels("failed").inc()
                    return "failed"
                log.warning("storing alert update failed; retrying", exc_info=True)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        if change == "duplicate":
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
                try:
                    batches = consumer.poll(timeout_ms=500)
                    for records in batches.values():
                        for record in records:
                            self._intake.handle_bytes(record.value)
                    if batches:
                        consumer.commit()
                except Exception:  # the broker away, a rebalance mid-commit: go on
                    log.exception("consuming alert updates failed; going on in 5 s")
                    self._stop.wait(5)
        finally:
            consumer.close()
