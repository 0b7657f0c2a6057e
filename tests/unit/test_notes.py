"""Notes on incidents: written with the write token, served with the incident,
and searched with the titles by GET /v1/incidents?q=."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from tests.factories import FakeClock, detector_update

WRITE = {"Authorization": "Bearer " + "w" * 24}


@pytest.fixture
def client(store_url: str) -> TestClient:
    families = {"conversion_rate": "conversion", "gmv": "orders"}
    book = AlertBook(
        AlertStore(store_url), families, Routing(AlertingConfig(), families), FakeClock()
    )
    return TestClient(create_app(book, CollectorRegistry(), auth=Auth(SecretStr("w" * 24))))


def incident_of(client: TestClient, metric: str, slice_: dict[str, str]) -> str:
    update = detector_update(metric, slice_)
    client.app.state.intake.handle(update)  # type: ignore[attr-defined]
    return str(client.get(f"/v1/alerts/{update['id']}").json()["incident_id"])


def note(client: TestClient, incident_id: str, text: str, kind: str = "cause") -> Any:
    body = {"author": "ana", "text": text, "kind": kind}
    return client.post(f"/v1/incidents/{incident_id}/notes", json=body, headers=WRITE)


def test_notes_are_kept_in_order_and_served_with_the_incident(client: TestClient) -> None:
    incident_id = incident_of(client, "conversion_rate", {"region": "eu"})
    first = note(client, incident_id, "PSP timeouts in eu", "cause")
    assert first.status_code == 201
    assert first.json()["kind"] == "cause" and first.json()["created_at"] == "2026-03-02T17:00:00Z"
    note(client, incident_id, "failed over to the second PSP", "action")
    served = client.get(f"/v1/incidents/{incident_id}").json()
    assert [(n["kind"], n["text"]) for n in served["notes"]] == [
        ("cause", "PSP timeouts in eu"),
        ("action", "failed over to the second PSP"),
    ]
    [listed] = client.get("/v1/incidents").json()["items"]
    assert listed["notes"] == served["notes"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param({}, {"author": "a", "text": "t", "kind": "cause"}, 401, id="no-token"),
        pytest.param(WRITE, {"author": "a", "text": "t", "kind": "guess"}, 422, id="bad-kind"),
        pytest.param(WRITE, {"author": "a", "text": "", "kind": "lesson"}, 422, id="empty-text"),
        pytest.param(WRITE, {"author": "a", "kind": "lesson"}, 422, id="no-text"),
        pytest.param(WRITE, {"author": "a", "text": " \n\t ", "kind": "cause"}, 422, id="blank"),
        pytest.param(WRITE, {"author": "  ", "text": "t", "kind": "cause"}, 422, id="no-author"),
        pytest.param(WRITE, {"author": "a", "text": "a\x00b", "kind": "cause"}, 422, id="nul"),
        pytest.param(WRITE, {"author": "a\x1b", "text": "t", "kind": "cause"}, 422, id="esc"),
    ],
)
def test_a_note_is_refused_without_the_write_token_or_in_a_bad_shape(
    client: TestClient, headers: dict[str, str], body: dict[str, str], status: int
) -> None:
    incident_id = incident_of(client, "conversion_rate", {"region": "eu"})
    answer = client.post(f"/v1/incidents/{incident_id}/notes", json=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/incidents/{incident_id}").json()["notes"] == []


def test_a_note_is_kept_without_the_whitespace_around_it(client: TestClient) -> None:
    incident_id = incident_of(client, "conversion_rate", {"region": "eu"})
    answer = note(client, incident_id, "  PSP timeouts\n  in eu \n")
    assert answer.status_code == 201 and answer.json()["text"] == "PSP timeouts\n  in eu"
    served = client.get(f"/v1/incidents/{incident_id}").json()
    assert [n["text"] for n in served["notes"]] == ["PSP timeouts\n  in eu"]


def test_a_note_on_an_unknown_incident_is_404(client: TestClient) -> None:
    answer = note(client, "0" * 32, "lost")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_q_finds_incidents_by_title_or_note_whatever_the_case(client: TestClient) -> None:
    conversion = incident_of(client, "conversion_rate", {"region": "eu"})
    gmv = incident_of(client, "gmv", {"region": "na"})
    note(client, gmv, "A 100% drop: the PSP's CERTIFICATE expired", "cause")

    def found(q: str) -> list[str]:
        return [i["id"] for i in client.get("/v1/incidents", params={"q": q}).json()["items"]]

    assert found("CONVERSION_rate") == [conversion]
    assert found("certificate") == [gmv]
    assert found("100%") == [gmv]
    assert found("0%") == [gmv]
    assert found("%") == [gmv]  # a literal percent sign, not a wildcard
    assert found("region=na") == [gmv]
    assert found("nothing like it") == []
