"""/v1/calendar: entries listed, added and deleted behind the write token, and seen by
the engine's calendar at once (embedded mode: one feed, no topic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.calendar import CalendarDesk
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from services.common.calendars import CalendarFeed, effect_key
from services.detector.engine.calendar import Calendar, parse_entry
from services.detector.engine.catalog import load_catalog
from tests.factories import FakeClock

WRITE = "w" * 24
CATALOG = load_catalog()
FAMILIES = {m.name: m.family for m in CATALOG.metrics}
NEW_YEAR = {
    "name": "New year",
    "every": "year",
    "start": "2026-01-01T00:00:00Z",
    "end": "2026-01-02T00:00:00Z",
    "slices": [{}],
    "effect": "exclude",
}
SALE = {
    "name": "Spring sale",
    "start": "2026-03-04T00:00:00+01:00",
    "end": "2026-03-06T00:00:00+01:00",
    "slices": [{"region": "eu"}],
    "effect": "expect",
    "expect": {"order_count": 2.0},
}


@pytest.fixture
def feed() -> CalendarFeed:
    return CalendarFeed(Calendar.of([parse_entry(NEW_YEAR)]))


@pytest.fixture
def client(tmp_path: Path, feed: CalendarFeed) -> TestClient:
    book = AlertBook(
        AlertStore(f"sqlite:///{tmp_path / 'a.db'}"),
        FAMILIES,
        Routing(AlertingConfig(), FAMILIES),
        FakeClock(),
    )
    app = create_app(
        book,
        CollectorRegistry(),
        auth=Auth(SecretStr(WRITE)),
        calendar_desk=CalendarDesk(feed, CATALOG.names),
    )
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def names(client: TestClient) -> list[tuple[str, str]]:
    items: list[dict[str, Any]] = client.get("/v1/calendar").json()["items"]
    return [(i["name"], i["source"]) for i in items]


def test_an_entry_added_is_listed_applied_and_deleted(
    client: TestClient, feed: CalendarFeed
) -> None:
    assert names(client) == [("New year", "file")]
    added = client.post("/v1/calendar", json=SALE, headers=bearer(WRITE))
    assert added.status_code == 201, added.text
    ident = added.json()["id"]
    again = client.post("/v1/calendar", json=SALE, headers=bearer(WRITE))
    assert again.json()["id"] == ident  # the same entry is added once
    assert names(client) == [("New year", "file"), ("Spring sale", "api")]
    assert [e.name for e in feed.calendar().entries] == ["New year", "Spring sale"]
    assert feed.calendar().entries[1].factor("order_count") == 2.0
    assert client.delete(f"/v1/calendar/{ident}", headers=bearer(WRITE)).status_code == 204
    assert [e.name for e in feed.calendar().entries] == ["New year"]
    gone = client.delete(f"/v1/calendar/{ident}", headers=bearer(WRITE))
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"


def test_writes_need_the_token_and_a_valid_entry(client: TestClient) -> None:
    for headers in ({}, bearer("x" * 24)):
        assert client.post("/v1/calendar", json=SALE, headers=headers).status_code == 401
    unknown = client.post(
        "/v1/calendar", json={**SALE, "expect": {"orders": 2.0}}, headers=bearer(WRITE)
    )
    assert unknown.status_code == 422
    assert "expect.orders: no such metric" in unknown.json()["detail"]
    backwards = client.post(
        "/v1/calendar", json={**SALE, "end": SALE["start"]}, headers=bearer(WRITE)
    )
    assert backwards.status_code == 422 and "end: must be after start" in backwards.text
    [from_file] = client.get("/v1/calendar").json()["items"]
    refused = client.delete(f"/v1/calendar/{from_file['id']}", headers=bearer(WRITE))
    assert refused.status_code == 409
    assert names(client) == [("New year", "file")]


def test_effects_of_ended_entries_are_listed_beside_the_entries(
    client: TestClient, feed: CalendarFeed
) -> None:
    effect = {"name": "Spring sale", "start": 1.0, "end": 2.0, "slice": "*", "metric": "gmv"}
    feed.apply(effect_key(effect).encode(), orjson.dumps({**effect, "observed": 3.0}))
    feed.apply(effect_key(effect).encode(), orjson.dumps({**effect, "observed": 4.0}))
    listed = client.get("/v1/calendar").json()
    assert listed["effects"] == [{**effect, "observed": 4.0}]  # the latest per key
    assert names(client) == [("New year", "file")]


def test_a_method_the_path_lacks_is_refused_naming_every_method_it_has(
    client: TestClient,
) -> None:
    """GET and POST are two routes of one path: a 405 names both."""
    refused = client.put("/v1/calendar", json=SALE, headers=bearer(WRITE))
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET, POST"
