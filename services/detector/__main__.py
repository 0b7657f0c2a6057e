"""``python -m services.detector``: a Faust worker running both detector stages."""

from __future__ import annotations

import faust
from prometheus_client import CollectorRegistry, start_http_server

from services.common.config import OpswatchSettings
from services.common.kafka import ensure_topics
from services.common.logs import dict_config
from services.detector.faust_app import create_app


def serve(settings: OpswatchSettings) -> None:
    assert settings.kafka_bootstrap
    ensure_topics(settings.kafka_bootstrap, settings.topics(), settings.kafka_partitions)
    registry = CollectorRegistry()
    app = create_app(settings, registry)
    if settings.detector_metrics_port:
        start_http_server(settings.detector_metrics_port, settings.detector_host, registry=registry)
    level = {"WARNING": "warn", "CRITICAL": "crit"}.get(settings.log_level.upper())
    worker = faust.Worker(
        app,
        loglevel=level or settings.log_level.lower(),
        logging_config=dict_config(settings.log_level),
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    from services.cli import app

    app(["run", "detector"])
