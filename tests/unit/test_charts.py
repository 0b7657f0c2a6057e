"""Charts of alerts and incidents: valid PNGs of Slack's size whose plotted data
are the alert's numbers, behind the read token, drawn once per version."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting import charts
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.charts import alert_plot, incident_plot
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from tests.factories import FakeClock, detector_update, iso

READ = "r" * 24
START = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
W = timedelta(minutes=5)
TZ = "Europe/Berlin"


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def history(slice_: dict[str, str], n: int = 12, level: float = 0.07) -> list[list[Any]]:
    return [
        [iso(START - W * k), level + 0.001 * k, level, level - 0.02, level + 0.02]
        for k in range(n, 0, -1)
    ]


def ingest_episode(
    client: TestClient, slice_: dict[str, str], observed: list[float], **over: Any
) -> str:
    intake = client.app.state.intake  # type: ignore[attr-defined]
    first = detector_update(slice_=slice_, start=START, series=history(slice_), **over)
    first["observed"] = observed[0]
    assert intake.handle(first) == "stored"
    for w, value in enumerate(observed[1:], start=1):
        update = detector_update(slice_=slice_, start=START, window=w, observed=value, **over)
        assert intake.handle(update) == "stored"
    return str(first["id"])


@pytest.fixture
def client(store_url: str) -> TestClient:
    families = {"conversion_rate": "conversion"}
    book = AlertBook(
        AlertStore(store_url), families, Routing(AlertingConfig(), families), FakeClock()
    )
    app = create_app(book, CollectorRegistry(), auth=Auth(read_token=SecretStr(READ)), timezone=TZ)
    return TestClient(app, headers={"Authorization": f"Bearer {READ}"})


def test_the_plot_data_are_the_alerts_windows(client: TestClient) -> None:
    slice_ = {"region": "eu", "channel": "web"}
    alert_id = ingest_episode(client, slice_, [0.01, 0.02, 0.015])
    body = client.get(f"/v1/alerts/{alert_id}").json()
    store: AlertStore = client.app.state.book.store  # type: ignore[attr-defined]
    data = alert_plot(body, store.series(alert_id), TZ)
    assert len(data.times) == 12 + 3
    assert data.observed[-3:] == [0.01, 0.02, 0.015]
    assert data.observed[-1] == body["observed"]
    assert data.expected[-1] == body["expected"]
    assert (data.low[-1], data.high[-1]) == (body["expected_low"], body["expected_high"])
    assert data.anomalous == [False] * 12 + [True] * 3
    assert data.observed[:12] == [p[1] for p in history(slice_)]
    # times in the business timezone: 17:00 UTC is 18:00 in Berlin in March
    assert data.times[12].hour == 18 and data.times[12].utcoffset() == timedelta(hours=1)
    assert data.title.startswith("conversion_rate in region=eu, channel=web\n2026-03-02 18:00")
    assert "CET" in data.title


def test_alert_and_incident_charts_are_pngs_of_slacks_size(client: TestClient) -> None:
    lead = ingest_episode(client, {"region": "eu"}, [0.01, 0.02])
    ingest_episode(client, {"region": "eu", "channel": "web"}, [0.005, 0.01])
    # a slice of the incident that is not below the lead's: not a driver
    ingest_episode(client, {"channel": "web"}, [0.03, 0.04], severity="warning")
    png = client.get(f"/v1/alerts/{lead}/chart.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png_size(png.content) == (800, 400)
    assert 10_000 < len(png.content) < 300_000
    incident_id = client.get(f"/v1/alerts/{lead}").json()["incident_id"]
    incident = client.get(f"/v1/incidents/{incident_id}").json()
    assert incident["alerts"] == 3
    chart = client.get(f"/v1/incidents/{incident_id}/chart.png")
    assert chart.status_code == 200 and png_size(chart.content) == (800, 400)
    store: AlertStore = client.app.state.book.store  # type: ignore[attr-defined]
    data = incident_plot(incident, store.members(incident), TZ)
    [driver] = data.drivers
    assert driver.label == "region=eu, channel=web"
    assert driver.values[-2:] == [0.005, 0.01]
    assert data.observed[-2:] == [0.01, 0.02]
    assert data.title.startswith(incident["title"] + "\n")


def test_a_chart_is_drawn_once_per_alert_version(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    alert_id = ingest_episode(client, {"region": "eu"}, [0.01])
    drawn: list[charts.PlotData] = []
    real = charts.render

    def counting(data: charts.PlotData) -> bytes:
        drawn.append(data)
        return real(data)

    monkeypatch.setattr("services.alerting.api.charts.render", counting)
    first = client.get(f"/v1/alerts/{alert_id}/chart.png").content
    assert client.get(f"/v1/alerts/{alert_id}/chart.png").content == first
    assert len(drawn) == 1
    intake = client.app.state.intake  # type: ignore[attr-defined]
    intake.handle(detector_update(slice_={"region": "eu"}, start=START, window=1, observed=0.03))
    client.get(f"/v1/alerts/{alert_id}/chart.png")
    assert len(drawn) == 2 and drawn[1].observed[-1] == 0.03


def test_charts_need_the_read_token_and_name_what_is_missing(client: TestClient) -> None:
    alert_id = ingest_episode(client, {"region": "eu"}, [0.01])
    anonymous = client.get(f"/v1/alerts/{alert_id}/chart.png", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    for path in ("/v1/alerts/{}/chart.png", "/v1/incidents/{}/chart.png"):
        missing = client.get(path.format("0" * 32))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
