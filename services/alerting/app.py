"""Composition root of the alerting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.alerting.api import alerts
from services.alerting.intake import AlertIntake, KafkaAlertConsumer
from services.alerting.metrics import Metrics
from services.alerting.store import AlertStore
from services.common import health, problems
from services.common.events import Topics


def create_app(
    store: AlertStore,
    registry: CollectorRegistry,
    metrics: Metrics | None = None,
    kafka_bootstrap: str | None = None,
    topics: Topics | None = None,
) -> FastAPI:
    """The alert API; with a Kafka bootstrap it also consumes opswatch.alerts."""
    metrics = metrics or Metrics.create(registry)
    intake = AlertIntake(store, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        consumer = (
            KafkaAlertConsumer(kafka_bootstrap, topics or Topics(), intake)
            if kafka_bootstrap
            else None
        )
        if consumer is not None:
            consumer.start()
        yield
        if consumer is not None:
            consumer.stop()

    app = FastAPI(title="opswatch alerting", version="1", lifespan=lifespan)
    app.state.store = store
    app.state.registry = registry
    app.state.intake = intake
    problems.install(app)
    app.include_router(alerts.router)
    app.include_router(health.router)
    return app
