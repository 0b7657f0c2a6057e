"""``python -m services.ingest``: the ingest service against Kafka."""

from __future__ import annotations

import uvicorn
from prometheus_client import CollectorRegistry

from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.kafka import ensure_topics
from services.ingest.app import create_app
from services.ingest.keys import AnswerBook, Replays, SharedReplays
from services.ingest.sink import KafkaSink


def answer_book(settings: OpswatchSettings) -> AnswerBook:
    """Where the answers by Idempotency-Key are kept: this process, or the database of
    OPSWATCH_DATABASE_URL that every replica shares."""
    if settings.ingest_idempotency == "database":
        return SharedReplays(settings.database_url, settings.database_upgrade)
    return Replays()


def serve(settings: OpswatchSettings, kafka: KafkaConnection, replays: AnswerBook) -> None:
    ensure_topics(kafka, settings.topics(), settings.kafka_partitions)
    app = create_app(
        KafkaSink(kafka),
        CollectorRegistry(),
        settings.topics(),
        settings.ingest_max_events,
        settings.ingest_max_bytes,
        settings.ingest_max_inflight,
        replays,
        settings.max_metric_names,
        frozenset(settings.catalog().names),
        settings.ingest_body_timeout.total_seconds(),
    )
    uvicorn.run(app, host=settings.ingest_host, port=settings.ingest_port, log_level="warning")


if __name__ == "__main__":
    from services.cli import app

    app(["run", "ingest"])
