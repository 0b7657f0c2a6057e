"""The alert API over a real SQLite database and a real PostgreSQL one: reads, writes,
tokens, Slack buttons."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy.exc import DataError

from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.intake import KafkaAlertConsumer
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.runtime import wall_clock
from services.alerting.store import AlertStore
from services.common.connection import KafkaConnection
from services.common.events import Topics
from tests.factories import detector_update

WRITE = "w" * 24
READ = "r" * 24
SIGNING = "s" * 32


def alert(
    metric: str = "conversion_rate", slice_: dict[str, str] | None = None, **over: Any
) -> dict[str, Any]:
    return detector_update(metric, slice_, **over)


@pytest.fixture
def client(store_url: str) -> TestClient:
    families = {"conversion_rate": "conversion", "gmv": "orders"}
    book = AlertBook(
        AlertStore(store_url),
        families,
        Routing(AlertingConfig(), families),
        wall_clock,
    )
    return TestClient(
        create_app(
            book,
            CollectorRegistry(),
            auth=Auth(SecretStr(WRITE)),
            slack_signing_secret=SecretStr(SIGNING),
        )
    )


def intake(client: TestClient, body: dict[str, Any]) -> str:
    return client.app.state.intake.handle(body)  # type: ignore[attr-defined,no-any-return]


def test_updates_of_one_alert_land_on_one_row_and_never_go_back(client: TestClient) -> None:
    first = alert()
    assert intake(client, first) == "stored"
    assert intake(client, first) == "duplicate"
    later = alert(
        status="resolved", updated_at="2026-03-02T17:30:00Z", resolved_at="2026-03-02T17:30:00Z"
    )
    assert intake(client, later) == "stored"
    assert intake(client, first) == "duplicate"
    got = client.get(f"/v1/alerts/{first['id']}").json()
    assert got["status"] == "resolved"
    metrics = client.get("/metrics").text
    assert 'opswatch_alerting_alert_updates_total{outcome="duplicate"} 2.0' in metrics


def test_invalid_updates_are_counted_not_stored(client: TestClient) -> None:
    assert intake(client, alert(score=3.0)) == "invalid"
    assert client.get("/v1/alerts").json()["items"] == []


def test_filters_by_status_metric_and_slice_dimension(client: TestClient) -> None:
    intake(client, alert())
    intake(client, alert(metric="order_count", slice_={"region": "us"}, severity="warning"))
    intake(client, alert(slice_={}, status="resolved", resolved_at="2026-03-02T17:05:00Z"))
    assert len(client.get("/v1/alerts").json()["items"]) == 3
    eu = client.get("/v1/alerts", params={"region": "eu"}).json()["items"]
    assert [a["slice"] for a in eu] == [{"region": "eu", "channel": "web"}]
    firing = client.get("/v1/alerts", params={"status": "firing", "metric": "order_count"}).json()
    assert [a["slice"] for a in firing["items"]] == [{"region": "us"}]
    assert (
        client.get("/v1/alerts", params={"severity": "warning"}).json()["items"][0]["metric"]
        == "order_count"
    )
    none = client.get("/v1/alerts", params={"since": "2026-03-03T00:00:00Z"}).json()["items"]
    assert none == []


def test_pages_cover_every_alert_once(client: TestClient) -> None:
    for n in range(23):  # some starting at fractions of a second: tokens carry them
        started = f"2026-03-02T17:00:00.{n:06d}Z" if n % 2 else "2026-03-02T17:00:00Z"
        intake(client, alert(slice_={"region": f"r{n}"}, started_at=started))
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 5}
        if token:
            params["page_token"] = token
        page = client.get("/v1/alerts", params=params).json()
        seen += [a["id"] for a in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert len(seen) == 23 == len(set(seen))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/alerts?page_token=garbage", 422),
        ("/v1/alerts?since=0001-01-01T00:00:00%2B01:00", 422),
        ("/v1/incidents?until=9999-12-31T23:59:59-01:00", 422),
        ("/v1/alerts/0123456789abcdef0123456789abcdef", 404),
        ("/v1/alerts?status=sleeping", 422),
        ("/v1/alerts?limit=0", 422),
        ("/v1/alerts?since=yesterday", 422),
    ],
)
def test_errors_are_problem_details(client: TestClient, path: str, status: int) -> None:
    resp = client.get(path)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == status


@pytest.mark.parametrize(
    "path",
    [
        "/v1/incidents?q=%00",  # on SQLite, a search for a NUL matched every incident
        "/v1/incidents?family=conversion%0A",
        "/v1/alerts?region=e%01u",
        "/v1/alerts/0123%00",
        "/v1/incidents/0123%1B/review",
        "/incidents?q=%7F",
    ],
)
def test_a_control_character_in_a_filter_or_an_id_is_refused(client: TestClient, path: str) -> None:
    intake(client, alert(slice_={"region": "eu"}))
    resp = client.get(path)
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    # a search may hold what a note may: a tab, a line break
    assert client.get("/v1/incidents", params={"q": "a\tb\n"}).status_code == 200


def test_a_value_the_store_refuses_is_a_problem_not_a_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any) -> None:
        raise DataError("SELECT", {}, ValueError("text fields cannot contain NUL (0x00) bytes"))

    monkeypatch.setattr(client.app.state.book.store, "list_alerts", refuse)  # type: ignore[attr-defined]
    resp = client.get("/v1/alerts", params={"metric": "gmv"})
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["title"] == "Value refused"
    assert "cannot contain NUL" in resp.json()["detail"]


class Letters:
    """The dead-letter producer, kept in memory."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, topic: str, **record: Any) -> Any:
        self.sent.append((topic, record))
        return self

    def get(self, timeout: float) -> None:
        return None


def test_an_update_the_store_refuses_is_dead_lettered_not_read_again(client: TestClient) -> None:
    """PostgreSQL text cannot hold a NUL: such an update fails every time, so it is
    dead-lettered (SQLite keeps it); either way the consumer moves on."""
    update = alert(slice_={"region": "e\x00u"})
    record = SimpleNamespace(
        topic="opswatch.alerts",
        partition=0,
        offset=7,
        timestamp=1772470800000,
        key=b"k",
        value=orjson.dumps(update),
    )
    consumer = KafkaAlertConsumer(
        KafkaConnection("127.0.0.1:9"),
        Topics(),
        client.app.state.intake,  # type: ignore[attr-defined]
    )
    letters = Letters()
    started = time.monotonic()
    assert consumer._take_one(record, letters) is True  # taken, not read again
    assert time.monotonic() - started < 1  # no retries
    stored = client.get("/v1/alerts").json()["items"]
    if stored:  # SQLite
        assert letters.sent == [] and stored[0]["slice"] == {"region": "e\x00u"}
        return
    [(topic, dead)] = letters.sent
    assert topic == "opswatch.deadletter" and dead["value"] == record.value
    assert ("reason", b"data") in dead["headers"]
    metrics = client.get("/metrics").text
    assert 'opswatch_alerting_alert_updates_total{outcome="invalid"} 1.0' in metrics


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_head_answers_wherever_get_does_without_the_body(store_url: str) -> None:
    book = AlertBook(AlertStore(store_url), {}, Routing(AlertingConfig(), {}), wall_clock)
    app = create_app(book, CollectorRegistry(), auth=Auth(SecretStr(WRITE), SecretStr(READ)))
    with TestClient(app) as c:
        intake(c, alert(slice_={}))
        [incident] = c.get("/v1/incidents", headers=bearer(READ)).json()["items"]
        for path in (
            "/healthz",
            "/metrics",
            "/v1/alerts",
            f"/v1/alerts/{incident['alert_ids'][0]}",
            "/v1/incidents",
            f"/v1/incidents/{incident['id']}/chart.png",
            "/v1/stats",
            "/incidents",
            f"/incidents/{incident['id']}",
        ):
            got = c.get(path, headers=bearer(READ))
            head = c.head(path, headers=bearer(READ))
            assert (head.status_code, head.content) == (200, b""), path
            assert head.headers["content-type"] == got.headers["content-type"], path
        assert c.head("/v1/alerts").status_code == 401  # the token is checked as for GET
        assert c.head("/v1/alerts/" + "0" * 32, headers=bearer(READ)).status_code == 404
        refused = c.head("/v1/alerts/" + "0" * 32 + "/acknowledge", headers=bearer(WRITE))
        assert refused.status_code == 405  # HEAD never acts


def test_writes_need_the_write_token(client: TestClient) -> None:
    body = alert()
    intake(client, body)
    for headers in ({}, bearer("x" * 24), bearer(READ)):
        resp = client.post(f"/v1/alerts/{body['id']}/acknowledge", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.headers["content-type"] == "application/problem+json"
    resp = client.post(f"/v1/alerts/{body['id']}/acknowledge", headers=bearer(WRITE))
    assert resp.status_code == 200 and resp.json()["status"] == "acknowledged"


def test_a_read_token_guards_reads_when_set(store_url: str) -> None:
    book = AlertBook(AlertStore(store_url), {}, Routing(AlertingConfig(), {}), wall_clock)
    app = create_app(book, CollectorRegistry(), auth=Auth(SecretStr(WRITE), SecretStr(READ)))
    with TestClient(app) as c:
        assert c.get("/v1/alerts").status_code == 401
        assert c.get("/v1/alerts", headers=bearer(READ)).status_code == 200
        assert c.get("/v1/incidents", headers=bearer(WRITE)).status_code == 200


def test_lifecycle_over_http_with_409_for_illegal_moves(client: TestClient) -> None:
    body = alert()
    intake(client, body)
    url = f"/v1/alerts/{body['id']}"
    snoozed = client.post(f"{url}/snooze", json={}, headers=bearer(WRITE)).json()
    assert snoozed["snoozed_until_resolved"] is True
    assert client.post(f"{url}/resolve", headers=bearer(WRITE)).json()["status"] == "resolved"
    for action in ("resolve", "acknowledge"):
        resp = client.post(f"{url}/{action}", headers=bearer(WRITE))
        assert resp.status_code == 409
        assert resp.json()["title"] == "Illegal transition"
    resp = client.post(
        f"{url}/snooze", json={"until": "2020-01-01T00:00:00Z"}, headers=bearer(WRITE)
    )
    assert resp.status_code == 409
    resp = client.post(f"{url}/label", json={"label": "nonsense"}, headers=bearer(WRITE))
    assert resp.status_code == 422
    missing = client.post("/v1/alerts/" + "0" * 32 + "/resolve", headers=bearer(WRITE))
    assert missing.status_code == 404


def test_labels_feed_precision_in_stats_and_metrics(client: TestClient) -> None:
    bodies = [alert(slice_={"region": f"r{n}"}) for n in range(4)]
    for body in bodies:
        intake(client, body)
    for body, label in zip(bodies, ["true_positive", "expected", "false_positive"], strict=False):
        resp = client.post(
            f"/v1/alerts/{body['id']}/label", json={"label": label}, headers=bearer(WRITE)
        )
        assert resp.json()["label"] == label
    stats = client.get("/v1/stats").json()
    assert stats["labelled"] == 3 and stats["precision"] == pytest.approx(2 / 3)
    assert stats["alerts_by_status"] == {"firing": 4}
    text = client.get("/metrics").text
    assert "opswatch_alerting_label_precision_ratio 0.666" in text
    assert (
        'opswatch_alerting_alerts{alertname="OpswatchAnomaly",alertstate="firing",'
        'metric="conversion_rate",severity="critical",slice="region=r0"} 1.0'
    ) in text
    assert 'opswatch_alerting_alerts_stored{severity="critical",status="firing"} 4.0' in text
    labelled = client.get("/v1/alerts", params={"label": "false_positive"}).json()["items"]
    assert [a["id"] for a in labelled] == [bodies[2]["id"]]


def test_incidents_are_listed_and_served_one_by_one(client: TestClient) -> None:
    intake(client, alert(slice_={}))
    intake(client, alert(slice_={"region": "na"}))
    intake(client, alert(metric="gmv", slice_={"region": "na"}))
    page = client.get("/v1/incidents", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_page_token"]
    every = client.get("/v1/incidents").json()["items"]
    assert sorted(i["alerts"] for i in every) == [1, 2]
    one = client.get(f"/v1/incidents/{every[0]['id']}").json()
    # served one by one, an incident also lists the similar ones (none resolved yet)
    assert one == {**every[0], "similar": []} and every[0]["similar"] is None
    assert client.get("/v1/incidents/" + "0" * 32).status_code == 404
    alerts = client.get("/v1/alerts", params={"incident_id": one["id"]}).json()["items"]
    assert len(alerts) == one["alerts"]


def slack_request(payload: dict[str, Any], secret: str = SIGNING, skew: int = 0) -> dict[str, Any]:
    body = urlencode({"payload": orjson.dumps(payload).decode()})
    stamp = str(int(time.time()) + skew)
    sig = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "content": body,
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": f"v0={sig}",
        },
    }


def button(action: str, incident_id: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": "U1", "username": "alice"},
        "actions": [{"action_id": action, "value": incident_id, "type": "button"}],
    }


def test_slack_buttons_act_on_the_incident_only_when_signed(client: TestClient) -> None:
    intake(client, alert(slice_={}))
    intake(client, alert(slice_={"region": "na"}))
    [incident] = client.get("/v1/incidents").json()["items"]
    url = "/v1/slack/interactions"
    for bad in (
        slack_request(button("acknowledge", incident["id"]), secret="t" * 32),
        slack_request(button("acknowledge", incident["id"]), skew=-301),
    ):
        assert client.post(url, **bad).status_code == 401
    assert client.get(f"/v1/incidents/{incident['id']}").json()["status"] == "firing"
    resp = client.post(url, **slack_request(button("acknowledge", incident["id"])))
    assert resp.status_code == 200 and resp.json()["alerts"] == 2
    assert client.get(f"/v1/incidents/{incident['id']}").json()["status"] == "acknowledged"
    resp = client.post(url, **slack_request(button("false_alarm", incident["id"])))
    assert resp.status_code == 200
    after = client.get("/v1/alerts").json()["items"]
    assert {(a["status"], a["label"]) for a in after} == {("resolved", "false_positive")}
    gone = client.post(url, **slack_request(button("snooze", "0" * 32)))
    assert gone.status_code == 404


def raw_slack(body: bytes, stamp: str, signature: str | None = None) -> dict[str, Any]:
    """A request with this body and timestamp, signed unless ``signature`` is given
    (headers go as Latin-1 bytes, as the server reads them)."""
    mac = hmac.new(SIGNING.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "content": body,
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp.encode("latin-1"),
            "x-slack-signature": (signature or f"v0={mac.hexdigest()}").encode("latin-1"),
        },
    }


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(raw_slack(b"payload=%7B%7D", "9" * 400), id="huge-timestamp"),
        pytest.param(raw_slack(b"payload=%7B%7D", "\u00b2"), id="superscript-timestamp"),
        pytest.param(raw_slack(b"payload=\xff", str(int(time.time()))), id="not-utf8"),
        pytest.param(
            raw_slack(b"payload=%7B%7D", str(int(time.time())), "v0=\u00ff"), id="signature-latin1"
        ),
    ],
)
def test_a_slack_request_that_cannot_be_verified_is_401(
    client: TestClient, request_: dict[str, Any]
) -> None:
    async def post() -> httpx.Response:
        # the headers' bytes as given (TestClient would send "²" as UTF-8)
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://opswatch") as c:
            return await c.post("/v1/slack/interactions", **request_)

    resp = asyncio.run(post())
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["title"] == "Bad signature"


def note_submission(text: object) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "user": ["not", "an", "object"],
        "view": {
            "callback_id": "add_note",
            "private_metadata": "0" * 32,
            "state": {
                "values": {
                    "kind": {"kind": {"selected_option": {"value": "cause"}}},
                    "text": {"text": {"value": text}},
                }
            },
        },
    }


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(button("acknowledge", {"id": "x"}), id="value-object"),  # type: ignore[arg-type]
        pytest.param(button("acknowledge", ["x"]), id="value-array"),  # type: ignore[arg-type]
        pytest.param(note_submission(42), id="note-text-number"),
        pytest.param(note_submission({"a": 1}), id="note-text-object"),
    ],
)
def test_a_signed_slack_payload_of_the_wrong_shape_is_400(
    client: TestClient, payload: dict[str, Any]
) -> None:
    intake(client, alert(slice_={}))
    resp = client.post("/v1/slack/interactions", **slack_request(payload))
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    assert {a["status"] for a in client.get("/v1/alerts").json()["items"]} == {"firing"}
