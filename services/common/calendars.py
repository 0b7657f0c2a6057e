"""The calendar in force: the file's entries and those added through the alert API.

Entries added at runtime travel on the compacted topic ``<namespace>.calendar``
(one partition), keyed by entry id, the entry's JSON as value and a tombstone
(no value) for a deleted one. Every reader (the alert API's replicas, the
detector's workers) reads the topic from its beginning and keeps the entries in
a ``CalendarFeed``; in embedded mode the alert API and the engine share one
feed with no topic between them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson

from services.common.connection import KafkaConnection
from services.common.threads import Background
from services.detector.engine.calendar import Calendar, CalendarError, EntrySpec, parse_entry

log = logging.getLogger(__name__)


def entry_id(spec: EntrySpec) -> str:
    """The same entry gives the same id (posting it twice adds it once)."""
    canonical = orjson.dumps(spec.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


class CalendarFeed:
    """The file's entries (fixed) and the runtime ones by id, safe across threads.

    ``calendar()`` is the file's entries followed by the runtime ones in the order
    they were added: the same value until an entry is added or deleted."""

    def __init__(self, from_file: Calendar | None = None) -> None:
        self._file = from_file or Calendar()
        self._added: dict[str, EntrySpec] = {}
        self._lock = threading.Lock()
        self._calendar = self._file

    def calendar(self) -> Calendar:
        return self._calendar

    def from_file(self, ident: str) -> bool:
        return any(entry_id(e.spec) == ident for e in self._file.entries)

    def put(self, ident: str, spec: EntrySpec) -> None:
        with self._lock:
            self._added[ident] = spec
            self._changed()

    def delete(self, ident: str) -> bool:
        with self._lock:
            found = self._added.pop(ident, None) is not None
            if found:
                self._changed()
            return found

    def _changed(self) -> None:
        self._calendar = Calendar.of([*(e.spec for e in self._file.entries), *self._added.values()])

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the calendar topic; a record that is not an entry is skipped."""
        if key is None:
            log.warning("calendar record without a key skipped")
            return
        if value is None:
            self.delete(key.decode())
            return
        try:
            self.put(key.decode(), parse_entry(orjson.loads(value)))
        except (CalendarError, orjson.JSONDecodeError) as exc:
            log.warning("calendar record %s skipped: %s", key, exc)

    def listing(self) -> list[dict[str, Any]]:
        """Every entry with its id and where it comes from (``file`` or ``api``)."""
        with self._lock:
            added = list(self._added.items())
        return [
            {"id": entry_id(e.spec), "source": "file", **e.to_json()} for e in self._file.entries
        ] + [
            {"id": ident, "source": "api", **spec.model_dump(mode="json", exclude_none=True)}
            for ident, spec in added
        ]


Publish = Callable[[str, EntrySpec | None], None]


def kafka_publisher(kafka: KafkaConnection, topic: str) -> Publish:
    """Writes an entry (or its tombstone) to the calendar topic and waits for Kafka."""
    from services.common.kafka import producer

    sender = producer(kafka, "opswatch-calendar")

    def publish(ident: str, spec: EntrySpec | None) -> None:
        value = None if spec is None else orjson.dumps(spec.model_dump(mode="json"))
        sender.send(topic, key=ident.encode(), value=value).get(timeout=15)

    return publish


class CalendarReader(Background):
    """Reads the calendar topic from its beginning into a feed, in a thread, and
    goes on reading what is added (no consumer group: every reader reads it all)."""

    def __init__(self, kafka: KafkaConnection, topic: str, feed: CalendarFeed) -> None:
        super().__init__("calendar-reader")
        self._kafka = kafka
        self._topic = topic
        self._feed = feed

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            **self._kafka.client(
                client_id="opswatch-calendar", enable_auto_commit=False, group_id=None
            )
        )
        partition = TopicPartition(self._topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        try:
            while not self._stop.is_set():
                try:
                    for records in consumer.poll(timeout_ms=500).values():
                        for record in records:
                            self._feed.apply(record.key, record.value)
                except Exception:  # the broker away: go on
                    log.exception("reading the calendar topic failed; going on in 5 s")
                    self._stop.wait(5)
        finally:
            consumer.close()
