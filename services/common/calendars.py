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
import time
from collections.abc import Callable
from typing import Any

import orjson

from services.common.connection import KafkaConnection
from services.common.threads import Background
from services.detector.engine.calendar import Calendar, CalendarError, EntrySpec, parse_entry

log = logging.getLogger(__name__)


CATCH_UP_S = 30.0  # how long a process waits at start to read the calendar topic to its end
EFFECT = b"effect:"  # the key prefix of an ended entry's observed effect


def effect_key(effect: dict[str, Any]) -> str:
    return f"effect:{effect['name']}|{effect['start']}|{effect['slice']}|{effect['metric']}"


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
        self._effects: dict[str, dict[str, Any]] = {}  # by effect key, what the detector saw
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

    def add_effect(self, effect: dict[str, Any]) -> None:
        with self._lock:
            self._effects[effect_key(effect)] = effect

    def effects(self) -> list[dict[str, Any]]:
        """The observed effects of ended entries, by end, entry, slice and metric."""
        with self._lock:
            found = list(self._effects.values())
        return sorted(found, key=lambda e: (e["end"], e["name"], e["slice"], e["metric"]))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the calendar topic; a record that is not an entry is skipped."""
        if key is None:
            log.warning("calendar record without a key skipped")
            return
        if key.startswith(EFFECT) and value is not None:
            self.add_effect(orjson.loads(value))
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
        self._read_to_end = threading.Event()

    def begin(self, timeout_s: float = CATCH_UP_S) -> None:
        """Starts reading and waits (at most ``timeout_s``) until the topic is read to
        the end it had then, so that a process just started knows the entries already
        written before it serves or judges anything."""
        self.start()
        if not self._read_to_end.wait(timeout_s):
            log.warning(
                "the calendar topic was not read to its end within %.0f s; going on with "
                "the entries read so far",
                timeout_s,
            )

    def _run(self) -> None:
        consumer, partition = from_beginning(self._kafka, self._topic)
        try:
            end = consumer.end_offsets([partition])[partition]
            while not self._stop.is_set():
                try:
                    poll_into(consumer, self._feed)
                    if consumer.position(partition) >= end:
                        self._read_to_end.set()
                except Exception:  # the broker away: go on
                    log.exception("reading the calendar topic failed; going on in 5 s")
                    self._stop.wait(5)
        finally:
            consumer.close()


def from_beginning(kafka: KafkaConnection, topic: str) -> tuple[Any, Any]:
    """A consumer of no group at the beginning of the (one-partition) calendar topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka.client(client_id="opswatch-calendar", enable_auto_commit=False, group_id=None)
    )
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    return consumer, partition


def poll_into(consumer: Any, feed: CalendarFeed) -> None:
    """The records one poll of the calendar topic gives, applied to ``feed``."""
    for records in consumer.poll(timeout_ms=500).values():
        for record in records:
            feed.apply(record.key, record.value)


def read_effects(
    kafka: KafkaConnection, topic: str, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The observed effects on the calendar topic, read once to its end."""
    feed = CalendarFeed()
    consumer, partition = from_beginning(kafka, topic)
    try:
        end = consumer.end_offsets([partition])[partition]
        deadline = time.monotonic() + timeout_s
        while consumer.position(partition) < end and time.monotonic() < deadline:
            poll_into(consumer, feed)
    finally:
        consumer.close()
    return feed.effects()
