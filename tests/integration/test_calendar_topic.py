"""Calendar entries posted to the alert API reach the detector through the compacted
calendar topic: a runtime mute entry marks the alert of the incident inside it, and
once it ends the detector's account of what it did comes back to the API."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from services.common.events import Topics
from services.common.sinks import to_ingest
from tests.factories import outage, traffic
from tests.integration.conftest import Stack
from tests.integration.test_end_to_end import (
    CONVERSION,
    SLICE,
    START,
    alerts_for,
    judged_until,
    processed,
)

TOKEN = "calendar-write-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RELEASE = {
    "name": "Release night",
    "start": "2026-03-02T16:30:00Z",
    "end": "2026-03-02T18:30:00Z",
    "slices": [SLICE],
    "effect": "mute",
}
DRILL = {**RELEASE, "name": "Drill", "effect": "exclude", "slices": [{"region": "apac"}]}


def topic_records(bootstrap: str, topic: str) -> list[tuple[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    records = [(r.key.decode(), r.value) for r in consumer]
    consumer.close()
    return records


def test_a_runtime_entry_reaches_the_detector_and_marks_its_alert(
    stack: Stack, bootstrap: str
) -> None:
    stack.env["OPSWATCH_API_WRITE_TOKEN"] = TOKEN
    alerting = stack.start("alerting")
    kept = httpx.post(f"{alerting.url}/v1/calendar", json=RELEASE, headers=AUTH, timeout=20)
    assert kept.status_code == 201, kept.text
    dropped = httpx.post(f"{alerting.url}/v1/calendar", json=DRILL, headers=AUTH, timeout=20)
    gone = httpx.delete(f"{alerting.url}/v1/calendar/{dropped.json()['id']}", headers=AUTH)
    assert gone.status_code == 204
    topic = Topics(stack.namespace).calendar
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"]
    admin.close()
    assert configs[topic]["cleanup.policy"]["value"] == "compact"
    records = topic_records(bootstrap, topic)
    assert [(key, value is None) for key, value in records] == [
        (kept.json()["id"], False),
        (dropped.json()["id"], False),
        (dropped.json()["id"], True),  # the deletion: a tombstone
    ]
    # another replica of the API reads the topic from its beginning
    replica = stack.start("alerting")
    listed = httpx.get(f"{replica.url}/v1/calendar", timeout=5).json()["items"]
    assert [i["name"] for i in listed] == ["Release night"]

    events = traffic(
        7, rate=100, start=START, incidents=[outage(SLICE, timedelta(hours=17), timedelta(hours=1))]
    )
    detector = stack.start("detector", health=None)
    ingest = stack.start("ingest", "/readyz")
    assert to_ingest(events, ingest.url, batch=1000) == len(events)
    stack.wait(lambda: processed(detector.url) >= len(events), 300)
    past_incident = (START + timedelta(hours=6, minutes=10)).timestamp()
    stack.wait(lambda: judged_until(detector.url) >= past_incident, 180)

    def hits() -> list[dict[str, Any]]:
        return [
            a
            for a in alerts_for(alerting.url, region="eu", channel="web")
            if a["metric"] in CONVERSION and a["slice"] == SLICE
        ]

    stack.wait(lambda: bool(hits()), 120)
    mark = hits()[0]["calendar"]
    assert (mark["name"], mark["effect"]) == ("Release night", "mute")

    # once it has ended, what the entry did comes back on the topic, for the digest
    def effects() -> dict[str, dict[str, Any]]:
        listed = httpx.get(f"{alerting.url}/v1/calendar", timeout=5).json()["effects"]
        return {e["metric"]: e for e in listed if e["slice"] == "region=eu,channel=web"}

    stack.wait(lambda: "conversion_rate" in effects(), 120)
    conversion = effects()["conversion_rate"]
    assert conversion["name"] == "Release night"
    assert conversion["observed"] < conversion["ordinary"]  # the outage inside it
    digest = subprocess.run(
        [sys.executable, "-m", "services.cli", "digest", "--until", "2026-03-02T20:00:00Z"],
        env=stack.env,
        cwd=stack.tmp,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "| Release night | mute | region=eu, channel=web | conversion_rate |" in digest.stdout
