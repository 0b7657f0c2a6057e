"""The incident pages: what a responder reads in the browser, behind the read token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.deps import READ_COOKIE, Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.links import LINK_COOKIE, LinkSigner
from services.alerting.pages import timeline
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from tests.factories import FakeClock, detector_update, iso

READ, WRITE = "r" * 24, "w" * 24
BEARER = {"Authorization": f"Bearer {READ}"}
START = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


@pytest.fixture
def client(store_url: str) -> TestClient:
    families = {"conversion_rate": "conversion"}
    book = AlertBook(
        AlertStore(store_url), families, Routing(AlertingConfig(), families), FakeClock()
    )
    auth = Auth(SecretStr(WRITE), SecretStr(READ))
    return TestClient(create_app(book, CollectorRegistry(), auth=auth, timezone="Europe/Berlin"))


def incident_with_a_note(client: TestClient) -> str:
    intake = client.app.state.intake  # type: ignore[attr-defined]
    driver = {"slice": {"region": "eu", "channel": "web"}, "observed": 0.004, "expected": 0.07}
    update = detector_update(slice_={"region": "eu"}, start=START, drivers=[{**driver}])
    intake.handle(update)
    headers = {"Authorization": f"Bearer {WRITE}"}
    alert = client.get(f"/v1/alerts/{update['id']}", headers=headers).json()
    client.post(f"/v1/alerts/{update['id']}/acknowledge", headers=headers)
    note = {"author": "ana", "text": "PSP <b>timeouts</b>", "kind": "cause"}
    client.post(f"/v1/incidents/{alert['incident_id']}/notes", json=note, headers=headers)
    return str(alert["incident_id"])


def test_a_signed_link_opens_the_page_and_the_cookie_it_sets_its_chart(
    client: TestClient,
) -> None:
    incident_id = incident_with_a_note(client)
    assert client.get(f"/incidents/{incident_id}").status_code == 401
    assert client.get(f"/incidents/{incident_id}?token={READ}").status_code == 401
    signer = LinkSigner.for_read_token(SecretStr(READ))
    assert signer is not None
    # a cookie jar keeps the link's cookie until then on its own, real, clock
    grant = signer.sign(incident_id, datetime.now(UTC) + timedelta(days=1))
    bad = client.get(f"/incidents/{incident_id}?expires={grant.expires}&signature=00")
    assert bad.status_code == 401 and "Bad link signature" in bad.text
    link = f"/incidents/{incident_id}?expires={grant.expires}&signature={grant.signature}"
    page = client.get(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.cookies.get(LINK_COOKIE + incident_id) == grant.cookie()
    kept = page.headers["set-cookie"]  # until the link expires, no longer
    until = format_datetime(datetime.fromtimestamp(grant.expires, UTC), usegmt=True)
    assert f"expires={until}" in kept and "HttpOnly" in kept
    assert client.get(f"/v1/incidents/{incident_id}/chart.png").status_code == 200
    assert client.get(f"/incidents/{incident_id}").status_code == 200
    assert client.get("/incidents").status_code == 401  # the link opens one incident


@pytest.mark.parametrize("expires", ["%C2%B2", "%D9%A3", "9" * 13, "-1", ""])
def test_a_link_whose_expiry_is_not_unix_seconds_is_401(client: TestClient, expires: str) -> None:
    incident_id = incident_with_a_note(client)
    query = f"?expires={expires}&signature=00"
    page = client.get(f"/incidents/{incident_id}{query}")
    assert page.status_code == 401 and "Bad link signature" in page.text
    chart = client.get(f"/v1/incidents/{incident_id}/chart.png{query}")
    assert chart.status_code == 401
    assert chart.headers["content-type"] == "application/problem+json"
    assert chart.json()["detail"] == "expires must be a Unix time in seconds"
    client.cookies.set(LINK_COOKIE + incident_id, f"{expires}.00")
    assert client.get(f"/incidents/{incident_id}").status_code == 401


def test_the_read_token_opens_the_pages_as_a_cookie(client: TestClient) -> None:
    incident_id = incident_with_a_note(client)
    client.cookies.set(READ_COOKIE, READ)
    assert client.get(f"/incidents/{incident_id}").status_code == 200
    assert client.get(f"/v1/incidents/{incident_id}/chart.png").status_code == 200
    assert client.get("/incidents").status_code == 200


def test_the_page_shows_chart_alerts_drivers_timeline_and_escaped_notes(
    client: TestClient,
) -> None:
    incident_id = incident_with_a_note(client)
    html = client.get(f"/incidents/{incident_id}", headers=BEARER).text
    assert f'src="/v1/incidents/{incident_id}/chart.png"' in html
    assert "conversion_rate dropped in region=eu" in html
    assert "region=eu, channel=web: 0.004 vs 0.07" in html  # the driver
    assert "PSP &lt;b&gt;timeouts&lt;/b&gt;" in html and "<b>timeouts" not in html
    assert "2026-03-02 18:00 CET" in html  # the business timezone
    assert 'name="viewport"' in html
    assert "acknowledged: conversion_rate in region=eu" in html


def test_the_list_shows_open_incidents_and_filters_by_text(client: TestClient) -> None:
    incident_id = incident_with_a_note(client)
    listed = client.get("/incidents", headers=BEARER).text
    assert f'href="/incidents/{incident_id}"' in listed
    assert (
        f'href="/incidents/{incident_id}"'
        in client.get("/incidents?q=timeouts", headers=BEARER).text
    )
    assert (
        f'href="/incidents/{incident_id}"'
        not in client.get("/incidents?q=refund", headers=BEARER).text
    )
    assert client.get("/incidents/" + "0" * 32, headers=BEARER).status_code == 404


def test_the_timeline_orders_what_happened() -> None:
    alert = detector_update(start=START) | {
        "acknowledged_at": iso(START + timedelta(minutes=9)),
        "resolved_at": iso(START + timedelta(minutes=40)),
    }
    sent = {"receiver": "slack", "kind": "firing", "outcome": "sent", "attempts": 1}
    notes = [{"kind": "lesson", "author": "bo", "text": "x", "created_at": iso(START)}]
    events = timeline([alert], [sent | {"created_at": iso(START + timedelta(minutes=5))}], notes)
    assert [e.kind for e in events] == ["anomaly", "note", "notified", "acknowledged", "resolved"]
    assert events[2].text == "firing notification to slack (sent)"


def test_an_open_incident_is_listed_however_many_came_after_it(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("services.alerting.api.pages.RECENT", 2)
    intake = client.app.state.intake  # type: ignore[attr-defined]
    old = detector_update(slice_={"region": "eu"}, start=START)
    intake.handle(old)
    clock = client.app.state.book.clock  # type: ignore[attr-defined]
    for i in range(3):
        clock.advance(hours=1)  # incidents open in the order they are seen
        later = START + timedelta(hours=i + 1)
        slice_ = {"region": f"r{i}"}
        intake.handle(detector_update(slice_=slice_, start=later))
        intake.handle(detector_update(slice_=slice_, start=later, window=3, status="resolved"))
    html = client.get("/incidents", headers=BEARER).text
    opened = html[html.index('id="open"') : html.index('id="recent"')]
    recent = html[html.index('id="recent"') :]
    assert "conversion_rate dropped in region=eu" in opened
    assert "region=r2" in recent and "region=eu" not in recent
    assert "region=r" not in opened
