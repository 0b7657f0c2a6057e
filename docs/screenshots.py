"""Make the README's pictures from the simulator: a payment outage in region=eu,
channel=web runs through the engine into the alert store; its incident's chart
(docs/chart.png) and its page in headless chromium (docs/incident.png).

    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from services.common.events import event_time, leaf_of
from services.common.simulator import Incident, Simulator
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings

DOCS = Path(__file__).parent
REPO = DOCS.parent
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WRITE = "w" * 24
PORT = 18321


def main() -> None:
    catalog = load_catalog()
    outage = Incident(
        family="conversion",
        slice={"region": "eu", "channel": "web"},
        start=START + timedelta(hours=5),
        duration=timedelta(hours=1),
        magnitude=0.9,
    )
    sim = Simulator(START, timedelta(hours=8), seed=7, sessions_per_minute=200, incidents=[outage])
    engine = Engine(catalog, EngineSettings())
    alerts = []
    for e in sim.events():
        engine.add(e, event_time(e), leaf_of(e))
        alerts += engine.poll()
    families = {m.name: m.family for m in catalog.metrics}
    with tempfile.TemporaryDirectory() as tmp:
        book = AlertBook(
            AlertStore(f"sqlite:///{tmp}/alerts.db"),
            families,
            Routing(AlertingConfig(), families),
            lambda: START + timedelta(hours=5, minutes=10),
        )
        app = create_app(
            book, CollectorRegistry(), auth=Auth(SecretStr(WRITE)), timezone="Europe/Berlin"
        )
        for alert in alerts:
            app.state.intake.handle(alert)
        server = uvicorn.Server(uvicorn.Config(app, port=PORT, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{PORT}"
        [incident] = httpx.get(f"{base}/v1/incidents").json()["items"]
        note = {
            "author": "ana",
            "text": "PSP timeouts in eu after the 17:55 deploy",
            "kind": "cause",
        }
        httpx.post(
            f"{base}/v1/incidents/{incident['id']}/notes",
            json=note,
            headers={"Authorization": f"Bearer {WRITE}"},
        )
        (DOCS / "chart.png").write_bytes(
            httpx.get(f"{base}/v1/incidents/{incident['id']}/chart.png").content
        )
        page = f"{base}/incidents/{incident['id']}"
        shot = str(DOCS / "incident.png")
        script = str(REPO / "deploy" / "local" / "chromium.sh")
        subprocess.run(["bash", script, "screenshot", page, shot], capture_output=True, check=True)
        server.should_exit = True
    print(f"docs/chart.png and docs/incident.png: {incident['title']}")


if __name__ == "__main__":
    main()
