"""Embedded mode: simulator, engine, alerting and the alert API in one process.

It exists so that a newcomer sees the whole thing work with no servers: the
same engine and the same alerting code as Kafka mode, with the hand-over done
in memory. The simulator first plays the last day and a half as fast as it can
(the baselines need a day to learn the daily cycle), with a payment incident
near the end and, earlier that day, a stock-out in one region's metric series,
then keeps going in real time.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.calendar import CalendarDesk
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.intake import AlertIntake
from services.alerting.runtime import Runtime
from services.common.calendars import CalendarFeed
from services.common.config import OpswatchSettings
from services.common.events import event_time, leaf_of
from services.common.simulator import Incident, Simulator
from services.detector.engine.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from services.detector.engine.engine import Engine

log = logging.getLogger(__name__)

DEMO_SERIES = Path(__file__).with_name("demo-series.yaml")


@dataclass(frozen=True)
class DemoPlan:
    start: datetime
    incident: Incident
    stockout: Incident

    @classmethod
    def around(cls, now: datetime) -> DemoPlan:
        """A payment incident at the last 17:00 UTC (busy hours) at least an hour
        ago, and six hours before it region eu's stock running out for two hours,
        after history from midnight the day before: the baselines learn the daily
        cycle, and the series have seen the stock-out's hours of the day on an
        earlier day (a series is judged at an hour from the second day it sees it)."""
        at = now.replace(hour=17, minute=0, second=0, microsecond=0)
        while at > now - timedelta(hours=1):
            at -= timedelta(days=1)
        incident = Incident(
            family="conversion",
            slice={"region": "na", "channel": "web"},
            start=at,
            duration=timedelta(hours=1),
            magnitude=0.8,
        )
        stockout = Incident(
            family="stockout",
            slice={"region": "eu"},
            start=at - timedelta(hours=6),
            duration=timedelta(hours=2),
            magnitude=1.0,
        )
        return cls(at - timedelta(hours=17 + 24), incident, stockout)

    @property
    def incidents(self) -> list[Incident]:
        return [self.stockout, self.incident]


def demo_catalog(settings: OpswatchSettings) -> Catalog:
    """The catalog of OPSWATCH_METRICS_FILE; without one, the built-in catalog with
    the demo's metric series declared (demo-series.yaml)."""
    if settings.metrics_file is not None:
        return settings.catalog()
    return load_catalog(DEFAULT_CATALOG, DEMO_SERIES)


def run_embedded(
    settings: OpswatchSettings,
    alerting: Runtime,
    on_alert: Callable[[Mapping[str, Any]], None],
    on_progress: Callable[[str], None],
    run_for: timedelta | None = None,
    sessions_per_minute: float = 100.0,
    seed: int = 42,
) -> None:
    now = datetime.now(UTC)
    plan = DemoPlan.around(now)
    catalog = demo_catalog(settings)
    write_token = alerting.auth.write_token or SecretStr(secrets.token_urlsafe(24))
    # the alert API's /v1/calendar and the engine share one feed: no topic between them
    feed = CalendarFeed(settings.calendar())
    app = create_app(
        alerting.book,
        CollectorRegistry(),
        senders=alerting.senders,
        auth=Auth(write_token, alerting.auth.read_token),
        slack_signing_secret=settings.secret("slack_signing_secret"),
        digest=alerting.config.digest,
        timezone=settings.timezone,
        calendar_desk=CalendarDesk(feed, catalog.names),
    )
    intake: AlertIntake = app.state.intake
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.alerting_host, port=settings.alerting_port, log_level="warning"
        )
    )
    api = threading.Thread(target=server.run, name="alert-api", daemon=True)
    api.start()
    on_progress(
        f"alert API on http://{settings.alerting_host}:{settings.alerting_port}/v1/alerts; "
        f"replaying traffic from {plan.start:%Y-%m-%d %H:%M} UTC with a payment incident in "
        f"region=na,channel=web from {plan.incident.start:%H:%M} UTC for 1h and a stock-out "
        f"(inventory_units at zero) in region=eu from {plan.stockout.start:%H:%M} UTC for 2h, "
        "then live"
    )
    if alerting.auth.write_token is None:
        on_progress(
            "acknowledge, resolve, snooze and label with "
            f"'Authorization: Bearer {write_token.get_secret_value()}' "
            "(a token for this run; set OPSWATCH_API_WRITE_TOKEN for your own)"
        )
    engine = Engine(catalog, settings.engine(), feed.calendar())
    sim = Simulator(
        plan.start,
        timedelta(days=3650),
        seed=seed,
        sessions_per_minute=sessions_per_minute,
        incidents=plan.incidents,
        series=True,
    )
    deadline = time.monotonic() + run_for.total_seconds() if run_for else None
    caught_up = False
    count = 0
    try:
        for event in sim.events():
            ts = event_time(event)
            if ts > time.time() and not caught_up:
                caught_up = True
                on_progress(f"caught up with the present after {count} events; now live")
            while ts > time.time() and not _past(deadline):
                time.sleep(min(ts - time.time(), 0.5))
            if _past(deadline):
                break
            engine.add(event, ts, leaf_of(event))
            count += 1
            if count % 2048 == 0 or caught_up:
                engine.evaluator.calendar = feed.calendar()  # entries added through the API
                alerts = engine.poll()
                for effect in engine.effects():  # ended entries, for the digest
                    feed.add_effect(effect)
                for alert in alerts:
                    # shown even when an earlier run stored it already (same id)
                    if intake.handle(alert) != "invalid":
                        on_alert(alert)
    finally:
        server.should_exit = True
        api.join(timeout=5)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline
