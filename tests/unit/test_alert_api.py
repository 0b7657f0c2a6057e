"""The alert store and GET /v1/alerts over a real SQLite database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from services.alerting.app import create_app
from services.alerting.store import AlertStore
from services.detector.engine.explain import alert_id, fingerprint


def alert(
    metric: str = "conversion_rate", slice_: dict[str, str] | None = None, **over: Any
) -> dict[str, Any]:
    slice_ = {"region": "eu", "channel": "web"} if slice_ is None else slice_
    key = ",".join(f"{k}={v}" for k, v in slice_.items()) or "*"
    fp = fingerprint(metric, key)
    started = over.pop("started", 1772470800)
    body = {
        "id": alert_id(fp, started),
        "fingerprint": fp,
        "metric": metric,
        "slice": slice_,
        "window_start": "2026-03-02T17:00:00Z",
        "window_end": "2026-03-02T17:05:00Z",
        "direction": "down",
        "observed": 0.01,
        "expected": 0.07,
        "expected_low": 0.05,
        "expected_high": 0.09,
        "n": 400.0,
        "p_value": 1e-9,
        "score": 0.9,
        "severity": "critical",
        "status": "firing",
        "started_at": f"2026-03-02T17:{started % 3600 // 60:02d}:00Z",
        "updated_at": "2026-03-02T17:05:00Z",
        "resolved_at": None,
        "windows": 1,
    }
    body.update(over)
    return body


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    store = AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}")
    return TestClient(create_app(store, CollectorRegistry()))


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
    for minute in range(23):
        intake(client, alert(started=1772470800 + 60 * minute))
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
        ("/v1/alerts?page_token=garbage", 400),
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
