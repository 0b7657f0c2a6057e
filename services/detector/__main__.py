"""``python -m services.detector``: a Faust worker running both detector stages."""

from __future__ import annotations

import logging
import os
import sys
import time

import aiokafka.errors
import faust
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from services.common.calendars import CalendarFeed, CalendarReader
from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.kafka import ensure_topics, reachable
from services.common.logs import dict_config
from services.detector.faust_app import changelogs, create_app, leader_topic

log = logging.getLogger(__name__)
BROKER_WAIT_S = 300.0


def serve(settings: OpswatchSettings, kafka: KafkaConnection) -> None:
    ensure_topics(
        kafka,
        settings.topics(),
        settings.kafka_partitions,
        single=(leader_topic(settings),),
        also_check=changelogs(settings),
    )
    registry = CollectorRegistry()
    # entries added through the alert API arrive on the calendar topic, read in a thread
    feed = CalendarFeed(settings.calendar())
    CalendarReader(kafka, settings.topics().calendar, feed).begin()
    app = create_app(settings, kafka, registry, feed)
    if settings.detector_metrics_port:
        start_http_server(settings.detector_metrics_port, settings.detector_host, registry=registry)
    level = {"WARNING": "warn", "CRITICAL": "crit"}.get(settings.log_level.upper())
    worker = faust.Worker(
        app,
        loglevel=level or settings.log_level.lower(),
        logging_config=dict_config(settings.log_level),
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        reason = app.crash_reason
        if exit_.code == 0 and reason is None:
            raise  # stopped by a signal
        if isinstance(reason, aiokafka.errors.KafkaError | KafkaError) or not (reachable(kafka)):
            start_again_with_the_broker(kafka)
        raise SystemExit(1) from reason


def start_again_with_the_broker(kafka: KafkaConnection) -> None:
    """The worker stopped because Kafka went away: once the broker answers again, the
    process starts afresh (same pid, state from the changelogs, input from the
    committed offsets), as a supervisor would, only sooner."""
    log.error("the detector lost Kafka; starting again once %s answers", kafka.bootstrap)
    deadline = time.monotonic() + BROKER_WAIT_S
    while not reachable(kafka):
        if time.monotonic() > deadline:
            log.critical("Kafka at %s did not come back in %.0f s", kafka.bootstrap, BROKER_WAIT_S)
            return
        time.sleep(1.0)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "services.cli", *sys.argv[1:]])


if __name__ == "__main__":
    from services.cli import app

    app(["run", "detector"])
