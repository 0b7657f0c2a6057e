"""Dead letters back to their topics once what refused them is fixed.

Every reason has a replay position of its own (a consumer group), so replaying
one reason twice sends only what arrived since, and never touches the others.
A record that still fails validation stays in the topic and is counted; the
reason's position moves past it (``--dry-run`` first to see how many). Replayed
events older than the detector's watermark count as late, so a replay helps
within the allowed lateness, or for a detector started afresh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer

from .connection import KafkaConnection
from .events import EventError, Topics, decode, partition_key, refuse_future
from .kafka import producer


@dataclass
class ReplaySummary:
    seen: int = 0
    matched: int = 0
    replayed: int = 0
    still_bad: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def replay(
    kafka: KafkaConnection, topics: Topics, reason: str, dry_run: bool, idle_ms: int = 5000
) -> ReplaySummary:
    """Re-produce the dead letters of ``reason`` that are valid events now."""
    consumer = KafkaConsumer(
        topics.deadletter,
        **kafka.client(
            group_id=f"{topics.namespace}-deadletter-replay-{reason}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=idle_ms,
            client_id="opswatch-deadletter-replay",
        ),
    )
    out = None if dry_run else producer(kafka, "opswatch-deadletter-replay")
    summary = ReplaySummary()
    try:
        for record in consumer:
            summary.seen += 1
            headers = dict(record.headers)
            told = headers.get("reason") or b""
            if told.decode(errors="replace") != reason or headers.get("source") == b"alerting":
                continue  # another reason, or an alert update (not an event)
            summary.matched += 1
            try:
                event = decode(record.value)
                refuse_future(event, time.time())
            except EventError:
                summary.still_bad += 1
                continue
            topic = topics.events[event["type"]]
            summary.by_topic[topic] = summary.by_topic.get(topic, 0) + 1
            summary.replayed += 1
            if out is not None:
                out.send(topic, key=partition_key(event), value=record.value)
        if out is not None:
            out.flush()
            consumer.commit()  # only once everything is acknowledged
    finally:
        if out is not None:
            out.close()
        consumer.close()
    return summary
