"""Alerts inside a calendar entry: stored and served with the entry, shown in Slack and
the digest, and not notified while the entry mutes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.alerting import digest
from services.alerting import incidents as inc
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.lifecycle import Policy
from services.alerting.messages import Links, slack_message
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertFilter, AlertStore
from services.common.contracts import Alert
from tests.factories import FakeClock, detector_update

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
FAMILIES = {"order_count": "orders", "conversion_rate": "conversion"}
SALE = {"name": "Spring sale", "effect": "expect", "factor": 2.0}
SECRET = {"env": "UNUSED"}
RELEASE = {"name": "Release night", "effect": "mute", "factor": None}


def make_book(path: Path, clock: FakeClock) -> AlertBook:
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [{"type": "webhook", "name": "hook", "url": SECRET, "secret": SECRET}],
            "routes": [{"receivers": ["hook"]}],
        }
    )
    return AlertBook(
        AlertStore(f"sqlite:///{path}"),
        FAMILIES,
        Routing(cfg, FAMILIES),
        clock,
        Policy(),
        inc.NotifyPolicy(group_wait=timedelta(seconds=30)),
    )


def update(calendar: dict[str, Any] | None, **over: Any) -> dict[str, Any]:
    body = detector_update(metric="order_count", observed=40.0, expected=200.0, **over)
    if calendar is not None:
        body["calendar"] = calendar
    return Alert.model_validate(body).model_dump(mode="json", exclude_none=True)


def first_alert(
    path: Path, calendar: dict[str, Any]
) -> tuple[AlertBook, FakeClock, int, dict[str, Any]]:
    """A book that took one alert inside ``calendar``: planned notifications once the
    group wait is over, and the alert as stored."""
    clock = FakeClock(T + timedelta(minutes=5))
    book = make_book(path, clock)
    book.ingest(update(calendar))
    clock.advance(minutes=5)
    planned = book.plan()
    [stored] = book.store.alerts_between(AlertFilter())
    return book, clock, planned, stored


def test_an_alert_inside_an_expect_entry_says_so_in_the_api_slack_and_digest(
    tmp_path: Path,
) -> None:
    book, clock, planned, stored = first_alert(tmp_path / "a.db", SALE)
    assert planned == 1
    [row] = book.store.outbox_rows()
    message = slack_message(row["payload"], Links("http://opswatch.test"))
    texts = str(message["attachments"][0]["blocks"])
    assert "Calendar: Spring sale (expect x2)" in texts
    assert stored["calendar"] == SALE
    d = digest.build(book.store, clock.now + timedelta(hours=1))
    assert (
        "| order_count | region=eu, channel=web | 40 | 200 | -80% | Spring sale (expect x2) |"
        in (digest.markdown(d))
    )
    app = create_app(book, CollectorRegistry())
    with TestClient(app) as client:
        served = client.get("/v1/alerts").json()
    assert served["items"][0]["calendar"] == SALE


def test_a_muted_alert_is_stored_not_notified_until_it_outlasts_the_entry(
    tmp_path: Path,
) -> None:
    book, clock, planned, stored = first_alert(tmp_path / "a.db", RELEASE)
    assert planned == 0
    assert stored["calendar"] == {"name": "Release night", "effect": "mute"}
    assert book.store.outbox_rows() == []
    # the entry is over and the alert still fires: now it is news
    book.ingest(update(None, window=1))
    clock.advance(seconds=30)
    assert book.plan() == 1


def test_the_digest_reports_what_an_entry_that_ended_did(tmp_path: Path) -> None:
    clock = FakeClock(T)
    book = make_book(tmp_path / "a.db", clock)
    ended = {
        "name": "Spring sale",
        "effect": "expect",
        "slice": "region=eu",
        "metric": "order_count",
        "start": (T - timedelta(days=2)).timestamp(),
        "end": (T - timedelta(hours=2)).timestamp(),
        "factor_set": 2.0,
        "observed": 5200.0,
        "ordinary": 2000.0,
        "windows": 528,
    }
    earlier = {**ended, "name": "Winter sale", "end": (T - timedelta(days=3)).timestamp()}
    text = digest.markdown(digest.build(book.store, T, effects=[ended, earlier]))
    assert "## Calendar entries that ended: observed effect" in text
    assert "| Spring sale | expect | region=eu | order_count | 2.6 | 2 |" in text
    assert "Winter sale" not in text  # ended before the digest's day
