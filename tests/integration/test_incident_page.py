"""The incident page in a real browser: Debian's chromium, headless, opens a signed
link and renders the chart (with the cookie the link set), the timeline and the
notes; a phone-sized screenshot is taken."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.links import LinkSigner
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from tests.factories import FakeClock, detector_update, iso

REPO = Path(__file__).parents[2]
READ, WRITE = "r" * 24, "w" * 24
START = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CHROMIUM = REPO / "deploy" / "local" / "chromium.sh"


@pytest.fixture(scope="module")
def chromium() -> None:
    """Debian's chromium, installed when missing."""
    subprocess.run(["bash", str(CHROMIUM), "install"], capture_output=True, timeout=900, check=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, FastAPI]]:
    families = {"conversion_rate": "conversion"}
    book = AlertBook(
        AlertStore(f"sqlite:///{tmp_path / 'alerts.db'}"),
        families,
        Routing(AlertingConfig(), families),
        FakeClock(),
    )
    app = create_app(book, CollectorRegistry(), auth=Auth(SecretStr(WRITE), SecretStr(READ)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)


def browse(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(CHROMIUM), *args], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


@pytest.mark.usefixtures("chromium")
def test_the_incident_page_renders_its_chart_timeline_and_notes_in_chromium(
    served: tuple[str, FastAPI], tmp_path: Path
) -> None:
    base, app = served
    write = {"Authorization": f"Bearer {WRITE}"}
    history = [[iso(START.replace(minute=55, hour=16)), 0.07, 0.07, 0.05, 0.09]]
    update = detector_update(slice_={"region": "eu"}, start=START, series=history)
    app.state.intake.handle(update)
    alert = httpx.get(f"{base}/v1/alerts/{update['id']}", headers=write).json()
    incident_id = alert["incident_id"]
    note = {"author": "ana", "text": "PSP timeouts after the deploy", "kind": "cause"}
    assert httpx.post(f"{base}/v1/incidents/{incident_id}/notes", json=note, headers=write)
    signer = LinkSigner.for_read_token(SecretStr(READ))
    assert signer is not None
    grant = signer.sign(incident_id, datetime.now(UTC) + timedelta(days=7))
    link = f"{base}/incidents/{incident_id}?expires={grant.expires}&signature={grant.signature}"

    dom = browse("dom", link, "412x1400")
    assert re.search(rf'<img id="chart" src="/v1/incidents/{incident_id}/chart.png"', dom)
    timeline = dom[dom.index('id="timeline"') :]
    assert "first anomalous window: conversion_rate in region=eu" in timeline
    notes = dom[dom.index('id="notes"') :]
    assert "PSP timeouts after the deploy" in notes and "ana" in notes
    # the browser fetched the chart with the cookie the link set
    incident = httpx.get(f"{base}/v1/incidents/{incident_id}", headers=write).json()
    charts = app.state.charts
    assert charts.get(("incident", incident_id, incident["updated_at"], incident["status"]))

    shot = tmp_path / "incident.png"
    browse("screenshot", link, str(shot), "412x1400")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (412, 1400)
