"""The alerting service as a process against the real broker and a real
Alertmanager 0.25: detector updates in on opswatch.alerts, Alertmanager and
Slack (a local recording server) out; and a notification accepted before a
kill -9 is delivered once after the restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from kafka import KafkaProducer

from services.bench.services import free_port
from services.common.events import Topics
from tests.factories import detector_update
from tests.integration.conftest import REPO, Stack
from tests.recording import Recorder, recording_server

AM_SCRIPT = REPO / "deploy" / "local" / "alertmanager.sh"
DRIVER = {"region": "na", "channel": "web"}
SLACK = {"type": "slack_webhook", "name": "ops", "url": {"env": "T_SLACK_WEBHOOK"}}


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[tuple[str, Recorder]]:
    """A real Alertmanager routing every alert to a local webhook receiver."""
    with recording_server() as receiver:
        port = free_port()
        env = {
            **os.environ,
            "ALERTMANAGER_PORT": str(port),
            "ALERTMANAGER_WEBHOOK_URL": f"{receiver.url}/am-hook",
        }
        subprocess.run(["bash", str(AM_SCRIPT), "up"], env=env, check=True, timeout=600)
        try:
            yield f"http://127.0.0.1:{port}", receiver
        finally:
            subprocess.run(["bash", str(AM_SCRIPT), "down"], env=env, check=False, timeout=60)


def configure(stack: Stack, config: dict[str, Any], **env: str) -> None:
    path = stack.tmp / "alerting.yaml"
    path.write_text(yaml.safe_dump(config))
    stack.env.update(
        OPSWATCH_ALERTING_CONFIG=str(path),
        OPSWATCH_GROUP_WAIT="PT1S",
        OPSWATCH_API_WRITE_TOKEN="integration-write-token",
        **env,
    )


def configure_slack_only(stack: Stack, webhook_url: str) -> None:
    """One Slack webhook receiver, every incident routed to it."""
    stack.env["T_SLACK_WEBHOOK"] = webhook_url
    configure(stack, {"receivers": [SLACK], "routes": [{"receivers": ["ops"]}]})


def publish(bootstrap: str, stack: Stack, updates: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    topic = Topics(stack.namespace).alerts
    for update in updates:
        producer.send(topic, key=update["fingerprint"].encode(), value=orjson.dumps(update))
    producer.flush()
    producer.close()


def am_alerts(am_url: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{am_url}/api/v2/alerts", params={"active": "true"}, timeout=5)
    resp.raise_for_status()
    return resp.json()  # type: ignore[no-any-return]


def evidence(name: str, doc: Any) -> None:
    """Kept for the record when OPSWATCH_TEST_EVIDENCE names a directory."""
    folder = os.environ.get("OPSWATCH_TEST_EVIDENCE")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(json.dumps(doc, indent=2))


def test_alerts_reach_alertmanager_and_slack_and_resolve_there(
    bootstrap: str, stack: Stack, alertmanager: tuple[str, Recorder]
) -> None:
    am_url, am_hook = alertmanager
    with recording_server() as slack:
        stack.env["T_SLACK_WEBHOOK"] = f"{slack.url}/services/T0/B0/secret"
        configure(
            stack,
            {
                "public_url": "http://opswatch.test:8080",
                "grafana_url": "http://grafana.test/d/opswatch-ops",
                "receivers": [
                    {"type": "alertmanager", "name": "am", "urls": [am_url]},
                    SLACK,
                ],
                "routes": [{"receivers": ["am", "ops"]}],
            },
        )
        alerting = stack.start("alerting")
        drivers = [{"slice": DRIVER, "observed": 0.004, "expected": 0.071, "contribution": 0.83}]
        allup = detector_update(slice_={}, drivers=drivers)
        driver = detector_update(slice_=DRIVER)
        publish(bootstrap, stack, [allup, driver])

        def listed() -> list[dict[str, Any]]:
            return [
                a for a in am_alerts(am_url) if a["labels"].get("alertname") == "OpswatchAnomaly"
            ]

        stack.wait(lambda: len(listed()) == 2, 60)
        by_slice = {a["labels"].get("region", "all-up"): a for a in listed()}
        na = by_slice["na"]
        assert na["labels"]["metric"] == "conversion_rate"
        assert na["labels"]["channel"] == "web" and na["labels"]["severity"] == "critical"
        assert na["startsAt"].startswith("2026-03-02T17:00:00")
        assert na["generatorURL"] == f"http://opswatch.test:8080/v1/alerts/{driver['id']}"
        assert "expected 0.07" in na["annotations"]["description"]

        stack.wait(lambda: bool(am_hook.to("/am-hook")), 30)
        stack.wait(lambda: len(slack.requests) == 1, 30)
        message = slack.requests[0].json()
        incident = httpx.get(f"{alerting.url}/v1/incidents", timeout=5).json()["items"]
        assert len(incident) == 1 and incident[0]["alerts"] == 2
        assert incident[0]["id"] in str(message["attachments"][0]["blocks"])
        assert "Drivers: region=na, channel=web 0.004 vs 0.071" in str(message)
        evidence("slack-incident.json", message)
        evidence("alertmanager-alerts.json", listed())

        resolved = [
            detector_update(slice_={}, window=3, status="resolved"),
            detector_update(slice_=DRIVER, window=3, status="resolved"),
        ]
        publish(bootstrap, stack, resolved)
        stack.wait(lambda: not listed(), 60)

        def resolved_hooks() -> list[dict[str, Any]]:
            return [
                a
                for r in am_hook.to("/am-hook")
                for a in r.json()["alerts"]
                if a["status"] == "resolved"
            ]

        stack.wait(lambda: len(resolved_hooks()) == 2, 30)
        stack.wait(lambda: len(slack.requests) == 2, 30)
        assert slack.requests[1].json()["attachments"][0]["color"] == "#2EB67D"
        assert "RESOLVED" in slack.requests[1].json()["text"]


def test_a_notification_accepted_before_a_kill_is_sent_once_after_restart(
    bootstrap: str, stack: Stack
) -> None:
    port = free_port()  # Slack is unreachable until after the kill
    configure_slack_only(stack, f"http://127.0.0.1:{port}/services/T0/B0/secret")
    alerting = stack.start("alerting")
    publish(bootstrap, stack, [detector_update()])

    def tried() -> bool:
        text = httpx.get(alerting.url + "/metrics", timeout=5).text
        return any(
            line.startswith("opswatch_alerting_notifications_total{")
            and 'outcome="retried"' in line
            and float(line.rsplit(" ", 1)[1]) >= 1
            for line in text.splitlines()
        )

    stack.wait(tried, 60)
    assert httpx.get(alerting.url + "/v1/stats", timeout=5).json()["outbox_depth"] == 1
    os.killpg(alerting.process.pid, signal.SIGKILL)
    alerting.process.wait(timeout=10)
    stack.services.remove(alerting)

    with recording_server(port) as slack:
        restarted = stack.start("alerting", port=alerting.port)
        stack.wait(lambda: len(slack.requests) >= 1, 90)
        stack.wait(
            lambda: httpx.get(restarted.url + "/v1/stats", timeout=5).json()["outbox_depth"] == 0,
            30,
        )
        time.sleep(3)  # three more dispatcher rounds: nothing is sent twice
        assert len(slack.requests) == 1
        assert "conversion_rate" in slack.requests[0].json()["text"]
