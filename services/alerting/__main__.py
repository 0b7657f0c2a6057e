"""``python -m services.alerting``: the alert store, notifications and API,
consuming opswatch.alerts."""

from __future__ import annotations

import uvicorn
from prometheus_client import CollectorRegistry

from services.alerting.api.calendar import CalendarDesk
from services.alerting.app import create_app
from services.alerting.runtime import Runtime
from services.common.calendars import CalendarFeed, kafka_publisher
from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.kafka import ensure_topics


def serve(settings: OpswatchSettings, runtime: Runtime, kafka: KafkaConnection) -> None:
    ensure_topics(kafka, settings.topics(), settings.kafka_partitions)
    desk = CalendarDesk(
        CalendarFeed(settings.calendar()),
        settings.catalog().names,
        kafka_publisher(kafka, settings.topics().calendar),
    )
    app = create_app(
        runtime.book,
        CollectorRegistry(),
        senders=runtime.senders,
        auth=runtime.auth,
        slack_signing_secret=settings.secret("slack_signing_secret"),
        digest=runtime.config.digest,
        timezone=settings.timezone,
        kafka=kafka,
        topics=settings.topics(),
        calendar_desk=desk,
    )
    uvicorn.run(app, host=settings.alerting_host, port=settings.alerting_port, log_level="warning")


if __name__ == "__main__":
    from services.cli import app

    app(["run", "alerting"])
