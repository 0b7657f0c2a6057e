"""Simulated traffic through ingest, Kafka and a real Faust worker to GET /v1/alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from services.common.sinks import to_ingest
from tests.factories import T0, outage, traffic
from tests.integration.conftest import Stack

SLICE = {"region": "eu", "channel": "web"}
START = T0 + timedelta(hours=12)
CONVERSION = {"conversion_rate", "checkout_conversion", "payment_failure_rate"}


def processed(detector_url: str) -> float:
    text = httpx.get(detector_url + "/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("opswatch_detector_events_processed_total{")
    )


def alerts_for(alerting_url: str, **filters: str) -> list[dict[str, Any]]:
    resp = httpx.get(alerting_url + "/v1/alerts", params={"limit": 500, **filters}, timeout=5)
    resp.raise_for_status()
    return resp.json()["items"]  # type: ignore[no-any-return]


def run_pipeline(stack: Stack, with_incident: bool) -> tuple[list[dict[str, Any]], str]:
    incidents = [outage(SLICE, timedelta(hours=17), timedelta(hours=1))] if with_incident else []
    events = traffic(7, rate=100, start=START, incidents=incidents)
    alerting = stack.start("alerting")
    detector = stack.start("detector", health=None)
    ingest = stack.start("ingest", "/readyz")
    sent = to_ingest(events, ingest.url, batch=1000)
    assert sent == len(events)
    stack.wait(lambda: processed(detector.url) >= sent, 300)
    return events, alerting.url


def test_an_injected_conversion_drop_raises_an_alert_for_its_slice(stack: Stack) -> None:
    incident_is_alerted(stack)


def incident_is_alerted(stack: Stack) -> None:
    """Traffic with a conversion drop through ingest, the detector and alerting: the
    alert of its slice is listed by the API, with the incident's start."""
    _, url = run_pipeline(stack, with_incident=True)
    detector = next(s for s in stack.services if s.name == "detector")
    past_incident = (START + timedelta(hours=6, minutes=10)).timestamp()
    stack.wait(lambda: judged_until(detector.url) >= past_incident, 180)

    def alerted() -> bool:
        return any(
            a["metric"] in CONVERSION and a["slice"] == SLICE
            for a in alerts_for(url, region="eu", channel="web")
        )

    stack.wait(alerted, 120)
    hit = next(
        a
        for a in alerts_for(url, region="eu", channel="web")
        if a["metric"] in CONVERSION and a["slice"] == SLICE
    )
    assert "2026-03-02T17:00:00Z" <= hit["started_at"] < "2026-03-02T18:00:00Z"
    one = httpx.get(f"{url}/v1/alerts/{hit['id']}", timeout=5)
    assert one.status_code == 200
    assert one.json()["fingerprint"] == hit["fingerprint"]


def judged_until(detector_url: str) -> float:
    text = httpx.get(detector_url + "/metrics", timeout=5).text
    marks = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("opswatch_detector_evaluated_until_seconds{")
    ]
    return min(marks) if marks else 0.0


def test_the_same_traffic_without_the_incident_raises_no_alert_for_that_slice(stack: Stack) -> None:
    _, url = run_pipeline(stack, with_incident=False)
    detector = next(s for s in stack.services if s.name == "detector")
    end = (START + timedelta(hours=7) - timedelta(minutes=10)).timestamp()
    stack.wait(lambda: judged_until(detector.url) >= end, 120)
    assert [a for a in alerts_for(url) if a["slice"] == SLICE] == []
