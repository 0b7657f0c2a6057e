"""Composition root of the alerting service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api import alerts, calendar, charts, incidents, pages, slack, stats
from services.alerting.api.calendar import CalendarDesk
from services.alerting.api.deps import Auth
from services.alerting.book import AlertBook
from services.alerting.charts import ChartCache
from services.alerting.digest import scheduler
from services.alerting.intake import AlertIntake, KafkaAlertConsumer
from services.alerting.links import LinkSigner
from services.alerting.metrics import Metrics, StoreCollector
from services.alerting.notify import Dispatcher, Sender, SlackBotSender
from services.alerting.routing import DigestConfig
from services.common import health, problems
from services.common.calendars import CalendarFeed, CalendarReader
from services.common.connection import KafkaConnection
from services.common.events import Topics


def create_app(
    book: AlertBook,
    registry: CollectorRegistry,
    *,
    senders: dict[str, Sender] | None = None,
    auth: Auth | None = None,
    slack_signing_secret: SecretStr | None = None,
    kafka: KafkaConnection | None = None,
    topics: Topics | None = None,
    dispatch_interval_s: float = 1.0,
    digest: DigestConfig | None = None,
    timezone: str = "UTC",
    calendar_desk: CalendarDesk | None = None,
) -> FastAPI:
    """The alert API; with senders it also notifies, with a Kafka bootstrap it also
    consumes opswatch.alerts (and reads the calendar topic). Charts give times in
    ``timezone`` (the business's)."""
    metrics = Metrics.create(registry, list(senders or ()))
    registry.register(StoreCollector(book.store))
    intake = AlertIntake(book, metrics)
    desk = calendar_desk or CalendarDesk(CalendarFeed(), book.families.keys())
    rounds = [scheduler(book, digest, desk.feed.effects)] if digest else []
    dispatcher = (
        Dispatcher(book, senders, metrics, dispatch_interval_s, rounds)
        if senders is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        consumer = KafkaAlertConsumer(kafka, topics or Topics(), intake) if kafka else None
        reader = CalendarReader(kafka, (topics or Topics()).calendar, desk.feed) if kafka else None
        if consumer is not None and reader is not None:
            consumer.start()
            reader.begin()
        if dispatcher is not None:
            dispatcher.start()
        yield
        if consumer is not None and reader is not None:
            consumer.stop()
            reader.stop()
        if dispatcher is not None:
            dispatcher.stop()

    app = FastAPI(title="opswatch alerting", version="1", lifespan=lifespan)
    app.state.book = book
    app.state.registry = registry
    app.state.intake = intake
    app.state.metrics = metrics
    app.state.dispatcher = dispatcher
    app.state.auth = auth or Auth()
    app.state.links = LinkSigner.for_read_token(app.state.auth.read_token)
    app.state.slack_signing_secret = slack_signing_secret
    app.state.slack_bots = {
        name: s for name, s in (senders or {}).items() if isinstance(s, SlackBotSender)
    }
    app.state.timezone = timezone
    app.state.charts = ChartCache()
    app.state.calendar = desk
    problems.install(app)
    for module in (alerts, incidents, charts, pages, stats, slack, calendar):
        app.include_router(module.router)
    health.install(app)
    return app
