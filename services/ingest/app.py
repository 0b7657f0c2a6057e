"""Composition root of the ingest service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common import health as common_health
from services.common import problems
from services.common.events import MetricNames, Topics
from services.ingest.api import events, health
from services.ingest.keys import AnswerBook, Replays
from services.ingest.metrics import Metrics
from services.ingest.sink import Sink


def create_app(
    sink: Sink,
    registry: CollectorRegistry,
    topics: Topics | None = None,
    max_events: int = 10_000,
    max_bytes: int = 10_000_000,
    max_inflight: int = 16,
    replays: AnswerBook | None = None,
    max_metric_names: int = 100,
    catalog_names: frozenset[str] = frozenset(),
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """``max_inflight`` requests at most are read and produced at once (each holds up to
    ``max_bytes``); one more is answered 503 at once, so memory stays bounded while
    Kafka is slow or away. ``replays`` keeps the answers by Idempotency-Key (in this
    process unless given). Metric events of more than ``max_metric_names`` distinct
    names (in this process), or named as one of ``catalog_names``, are refused. A
    body not all arrived within ``body_timeout_s`` is answered 408, freeing its slot."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        sink.close()

    app = FastAPI(title="opswatch ingest", version="1", lifespan=lifespan)
    app.state.sink = sink
    app.state.registry = registry
    app.state.metrics = Metrics.create(registry)
    app.state.max_events = max_events
    app.state.max_bytes = max_bytes
    app.state.body_timeout_s = body_timeout_s
    app.state.replays = replays or Replays()
    app.state.inflight = events.InFlight(max_inflight)
    app.state.topics = topics or Topics()
    app.state.metric_names = MetricNames(max_metric_names, catalog_names)
    problems.install(app)
    app.include_router(events.router)
    app.include_router(health.router)
    common_health.install(app)
    return app
