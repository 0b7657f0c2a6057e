"""Incidents and their notifications, through the book over a real SQLite store and a
real PostgreSQL one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.alerting import incidents as inc
from services.alerting.book import AlertBook
from services.alerting.lifecycle import Policy
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertFilter, AlertStore, IncidentFilter
from tests.factories import FakeClock, detector_update

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
FAMILIES = {"conversion_rate": "conversion", "payment_failure_rate": "conversion", "gmv": "orders"}
SECRET = {"env": "UNUSED"}


def config(**extra: Any) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {
            "receivers": [
                {"type": "webhook", "name": "hook", "url": SECRET, "secret": SECRET},
                {"type": "alertmanager", "name": "am", "urls": ["http://127.0.0.1:1"]},
            ],
            "routes": [{"receivers": ["hook"]}],
            **extra,
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T + timedelta(minutes=5))


def make_book(store_url: str, clock: FakeClock, cfg: AlertingConfig | None = None) -> AlertBook:
    return AlertBook(
        AlertStore(store_url),
        FAMILIES,
        Routing(cfg or config(), FAMILIES),
        clock,
        Policy(),
        inc.NotifyPolicy(
            group_wait=timedelta(seconds=30),
            group_interval=timedelta(minutes=5),
            repeat_interval=timedelta(hours=4),
        ),
    )


@pytest.fixture
def book(store_url: str, clock: FakeClock) -> AlertBook:
    return make_book(store_url, clock)


def sent(book: AlertBook) -> list[tuple[str, str]]:
    return [(r["receiver"], r["kind"]) for r in book.store.outbox_rows()]


def incidents(book: AlertBook) -> list[dict[str, Any]]:
    items, _ = book.store.list_incidents(IncidentFilter(), 100)
    return items


def test_an_all_up_alert_and_its_driver_slices_are_one_incident_paged_once(
    book: AlertBook, clock: FakeClock
) -> None:
    book.ingest(detector_update(slice_={}))
    book.ingest(detector_update(slice_={"region": "na"}))
    book.ingest(detector_update(slice_={"region": "na", "channel": "web"}))
    book.ingest(detector_update(metric="payment_failure_rate", slice_={"channel": "web"}))
    assert book.plan() == 0  # group wait
    clock.advance(seconds=30)
    assert book.plan() == 1
    assert book.plan() == 0
    [one] = incidents(book)
    assert one["alerts"] == 4 and one["slice"] == {}
    [row] = book.store.outbox_rows()
    assert len(row["payload"]["alerts"]) == 4
    assert row["payload"]["alerts"][0]["slice"] == {}


@pytest.mark.parametrize(
    ("second", "together"),
    [
        ({"metric": "conversion_rate", "slice_": {"region": "us"}}, False),
        ({"metric": "gmv", "slice_": {"region": "eu"}}, False),
        ({"metric": "conversion_rate", "slice_": {"channel": "web"}}, True),
        ({"slice_": {"region": "eu", "channel": "app"}, "start": T + timedelta(hours=1)}, False),
    ],
    ids=["other-region", "other-family", "overlapping-slice", "an-hour-later"],
)
def test_what_joins_an_incident(book: AlertBook, second: dict[str, Any], together: bool) -> None:
    book.ingest(detector_update(slice_={"region": "eu"}))
    book.ingest(detector_update(**second))
    assert len(incidents(book)) == (1 if together else 2)


def test_changes_wait_for_the_group_interval_and_reminders_for_the_repeat(
    book: AlertBook, clock: FakeClock
) -> None:
    book.ingest(detector_update(slice_={"region": "eu"}))
    clock.advance(seconds=30)
    book.plan()
    clock.advance(minutes=1)
    book.ingest(detector_update(slice_={"region": "eu", "platform": "ios"}))
    assert book.plan() == 0
    clock.advance(minutes=4)
    assert book.plan() == 1
    clock.advance(hours=3, minutes=59)
    assert book.plan() == 0
    clock.advance(minutes=1)
    assert book.plan() == 1
    assert sent(book) == [("hook", "trigger"), ("hook", "update"), ("hook", "repeat")]


def test_acknowledged_is_announced_at_once_and_stops_reminders(
    book: AlertBook, clock: FakeClock
) -> None:
    update = detector_update()
    book.ingest(update)
    clock.advance(minutes=1)
    book.plan()
    book.act(update["id"], "acknowledge")
    assert book.plan() == 1
    clock.advance(hours=5)
    assert book.plan() == 0
    book.ingest(detector_update(window=3, status="resolved"))
    assert book.plan() == 1
    assert [k for _, k in sent(book)] == ["trigger", "acknowledge", "resolve"]


def test_a_snoozed_incident_is_quiet_but_its_resolve_is_announced(
    book: AlertBook, clock: FakeClock
) -> None:
    update = detector_update()
    book.ingest(update)
    clock.advance(minutes=1)
    book.plan()
    book.act(update["id"], "snooze")
    clock.advance(hours=5)
    book.ingest(detector_update(window=1))
    assert book.plan() == 0
    book.ingest(detector_update(window=4, status="resolved", windows=2))
    assert book.plan() == 1
    assert [k for _, k in sent(book)] == ["trigger", "resolve"]


def test_an_incident_over_before_the_group_wait_is_never_sent(
    book: AlertBook, clock: FakeClock
) -> None:
    book.ingest(detector_update())
    book.ingest(detector_update(window=3, status="resolved", windows=1))
    clock.advance(minutes=5)
    assert book.plan() == 0 and sent(book) == []


def test_a_mute_window_holds_notifications_not_detection(store_url: str) -> None:
    clock = FakeClock(datetime(2026, 3, 3, 2, 10, tzinfo=UTC))
    cfg = config(mute_windows=[{"name": "nightly", "start": "02:00", "end": "03:00"}])
    book = make_book(store_url, clock, cfg)
    start = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    book.ingest(detector_update(start=start))
    clock.advance(minutes=10)
    assert book.plan() == 0
    [stored], _ = book.store.list_alerts(AlertFilter(), 10)
    assert stored["status"] == "firing"
    clock.advance(minutes=40)  # 03:00
    assert book.plan() == 1


def test_a_flapping_alert_is_not_notified_on_every_flip(book: AlertBook, clock: FakeClock) -> None:
    clock.now = T + timedelta(minutes=1)
    start = T
    book.ingest(detector_update(start=start))
    clock.advance(minutes=1)
    book.plan()
    for _ in range(6):
        book.ingest(detector_update(start=start, window=3, status="resolved", windows=1))
        clock.advance(minutes=10)
        book.plan()
        start += timedelta(minutes=25)
        clock.now = start + timedelta(minutes=1)
        book.ingest(detector_update(start=start))
        clock.advance(minutes=10)
        book.plan()
    # the third reopen within two hours is flapping: from then on, no flip is sent
    assert [k for _, k in sent(book)] == ["trigger", "resolve"] * 3


def test_alertmanager_gets_every_alert_again_while_firing_and_the_end(
    store_url: str, clock: FakeClock
) -> None:
    book = make_book(store_url, clock, config(routes=[{"receivers": ["am"]}]))
    book.ingest(detector_update())
    assert book.plan() == 1  # no group wait: Alertmanager groups by itself
    clock.advance(seconds=30)
    assert book.plan() == 0
    clock.advance(seconds=30)
    assert book.plan() == 1
    book.ingest(detector_update(window=3, status="resolved"))
    assert book.plan() == 1
    clock.advance(minutes=5)
    assert book.plan() == 0
    last = book.store.outbox_rows()[-1]["payload"]
    assert last["alerts"][0]["status"] == "resolved"


def test_who_heard_of_an_incident_hears_its_end_whatever_leads_it_now(
    store_url: str, clock: FakeClock
) -> None:
    cfg = config(
        routes=[{"match": {"region": ["eu"]}, "receivers": ["hook"]}],
    )
    book = make_book(store_url, clock, cfg)
    book.ingest(detector_update(slice_={"region": "eu"}, severity="warning"))
    clock.advance(minutes=1)
    book.plan()
    book.ingest(detector_update(slice_={}))  # all-up, critical: the new lead, no region
    book.ingest(detector_update(slice_={"region": "eu"}, window=3, status="resolved"))
    book.ingest(detector_update(slice_={}, window=3, status="resolved"))
    clock.advance(minutes=10)
    book.plan()
    assert sent(book) == [("hook", "trigger"), ("hook", "resolve")]
    with book.store.transaction() as conn:
        assert book.store.active_incidents(conn) == []


def test_a_plan_that_fails_half_way_leaves_nothing_behind(
    book: AlertBook, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    book.ingest(detector_update())
    clock.advance(minutes=1)
    real = book.store.save_incident

    def broken(*args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(book.store, "save_incident", broken)
    assert book.plan() == 0
    assert sent(book) == []  # the accepted row went with the failed plan
    monkeypatch.setattr(book.store, "save_incident", real)
    assert book.plan() == 1 and book.plan() == 0
    assert sent(book) == [("hook", "trigger")]
