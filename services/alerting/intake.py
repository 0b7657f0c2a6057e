"""Alert updates in (from Kafka or, embedded, from the engine), rows in the store out."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from kafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DataError

from services.alerting.book import AlertBook
from services.alerting.metrics import Metrics
from services.common.connection import KafkaConnection
from services.common.contracts import Alert
from services.common.events import Topics, deadletter_headers
from services.common.kafka import producer
from services.common.threads import Background

log = logging.getLogger(__name__)
RETRIES = 4


class InvalidUpdateError(ValueError):
    """An alert update that is not JSON (reason json), not the contract (schema), or
    has a value the store refuses (data: a NUL in a slice value, on PostgreSQL)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AlertIntake:
    """Validates detector updates and hands them to the book; counts the outcomes."""

    def __init__(self, book: AlertBook, metrics: Metrics) -> None:
        self.book = book
        self.metrics = metrics

    def handle(self, alert: Mapping[str, Any]) -> str:
        """Validate and apply one update: stored, duplicate, invalid or failed."""
        try:
            return self.store(self.validate(alert))
        except InvalidUpdateError as exc:
            log.warning("invalid alert update dropped: %s", exc)
            return "invalid"

    def validate(self, alert: Any) -> dict[str, Any]:
        """The update normalised (times in one format); InvalidUpdateError, counted."""
        try:
            update = Alert.model_validate(alert).model_dump(mode="json")
        except ValidationError as exc:
            self.metrics.updates.labels("invalid").inc()
            raise InvalidUpdateError("schema", exc.errors()[0]["msg"]) from None
        if update["status"] == "acknowledged":
            self.metrics.updates.labels("invalid").inc()
            raise InvalidUpdateError("schema", "the detector never acknowledges")
        return update

    def parse(self, value: bytes) -> dict[str, Any]:
        try:
            alert = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            self.metrics.updates.labels("invalid").inc()
            raise InvalidUpdateError("json", f"not valid JSON: {exc}") from None
        return self.validate(alert)

    def store(self, update: dict[str, Any]) -> str:
        """Apply a valid update. A store that fails is retried a few times, then the
        update is counted as failed (and the caller keeps it to try again); one whose
        values the store refuses would fail every time: InvalidUpdateError, counted."""
        for attempt in range(RETRIES + 1):
            try:
                change = self.book.ingest(update)
                break
            except DataError as exc:
                self.metrics.updates.labels("invalid").inc()
                reason = str(exc.orig).splitlines()[0]
                raise InvalidUpdateError("data", f"the store refused it: {reason}") from None
            except Exception:
                if attempt == RETRIES:
                    log.exception("alert update %s could not be stored", update["id"])
                    self.metrics.updates.labels("failed").inc()
                    return "failed"
                log.warning("storing alert update failed; retrying", exc_info=True)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        if change == "duplicate":
            self.metrics.updates.labels("duplicate").inc()
            return "duplicate"
        self.metrics.updates.labels("stored").inc()
        return "stored"


class KafkaAlertConsumer(Background):
    """Reads opswatch.alerts in a thread. An update that is not valid goes to the
    dead-letter topic; one the store cannot take is read again after a pause, not
    skipped; offsets are committed once what they cover is stored or dead-lettered."""

    def __init__(self, kafka: KafkaConnection, topics: Topics, intake: AlertIntake) -> None:
        super().__init__("alert-consumer")
        self._kafka = kafka
        self._topic = topics.alerts
        self._deadletter = topics.deadletter
        self._group = f"{topics.namespace}-alerting"
        self._intake = intake

    def _run(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            self._topic,
            **self._kafka.client(
                group_id=self._group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id="opswatch-alerting",
                # new partitions (a scaled-out topic) join the assignment within seconds
                metadata_max_age_ms=10_000,
            ),
        )
        letters = producer(self._kafka, "opswatch-alerting")
        try:
            while not self._stop.is_set():
                try:
                    batches = consumer.poll(timeout_ms=500)
                    kept = self._take(batches, letters)
                    if kept is not None:  # read it again after a pause
                        for tp, offset in kept.items():
                            consumer.seek(tp, offset)
                        self._stop.wait(5)
                    if batches:
                        consumer.commit()
                except Exception:  # the broker away, a rebalance mid-commit: go on
                    log.exception("consuming alert updates failed; going on in 5 s")
                    self._stop.wait(5)
        finally:
            letters.close(timeout=5)
            consumer.close()

    def _take(self, batches: Mapping[Any, list[Any]], letters: Any) -> dict[Any, int] | None:
        """Store or dead-letter each record; None, or (when one could not be) the offset
        of each partition's first record not taken."""
        partitions = list(batches)
        for n, tp in enumerate(partitions):
            for record in batches[tp]:
                if not self._take_one(record, letters):
                    kept = {tp: record.offset}
                    kept.update({later: batches[later][0].offset for later in partitions[n + 1 :]})
                    return kept
        return None

    def _take_one(self, record: Any, letters: Any) -> bool:
        try:
            outcome = self._intake.store(self._intake.parse(record.value))
        except InvalidUpdateError as exc:
            log.warning("invalid alert update dead-lettered: %s", exc)
            headers = deadletter_headers(
                "alerting",
                exc.reason,
                "",
                str(exc),
                topic=record.topic,
                partition=str(record.partition),
                offset=str(record.offset),
                timestamp=str(record.timestamp),
            )
            try:
                letters.send(
                    self._deadletter, key=record.key, value=record.value, headers=headers
                ).get(timeout=30)
            except KafkaError:
                log.exception("dead-letter write failed; the update is read again")
                return False
            return True
        return outcome != "failed"
