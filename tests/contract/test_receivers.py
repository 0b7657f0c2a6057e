"""Receivers against a local recording server, through the official slack_sdk:
payloads, retries (429 with Retry-After, 5xx), no retry on other 4xx, Slack's
bot-token flow, PagerDuty's dedup key, the webhook signature, and no secret in
any log line."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.alerting import incidents as inc
from services.alerting.book import AlertBook
from services.alerting.metrics import Metrics
from services.alerting.notify import Dispatcher, build_senders
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore, IncidentFilter
from tests.factories import FakeClock, detector_update
from tests.recording import Recorder, recording_server

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
PUBLIC = "http://opswatch.test"
FAMILIES = {"conversion_rate": "conversion"}
HOOK_SECRET = "hook-secret-0123456789"
TOKEN = "xoxb-0123456789-secret"
WEBHOOK = {
    "type": "webhook",
    "name": "hook",
    "url": {"env": "T_HOOK_URL"},
    "secret": {"env": "T_HOOK_SECRET"},
}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_server() as rec:
        yield rec


class Rig:
    def __init__(self, store_url: str, receivers: list[dict[str, Any]]) -> None:
        self.clock = FakeClock(T + timedelta(minutes=5))
        config = AlertingConfig.model_validate(
            {
                "public_url": PUBLIC,
                "grafana_url": "http://grafana.test/d/opswatch-ops",
                "runbook_url": "http://runbooks.test/{metric}",
                "receivers": receivers,
                "routes": [{"receivers": [r["name"] for r in receivers]}],
            }
        )
        self.book = AlertBook(
            AlertStore(store_url),
            FAMILIES,
            Routing(config, FAMILIES),
            self.clock,
            notify=inc.NotifyPolicy(group_wait=timedelta(0)),
        )
        self.registry = CollectorRegistry()
        senders = build_senders(config, self.clock)
        self.dispatcher = Dispatcher(
            self.book, senders, Metrics.create(self.registry, list(senders))
        )

    def count(self, receiver: str, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "opswatch_alerting_notifications_total", {"receiver": receiver, "outcome": outcome}
        )
        return value or 0.0


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> None:
    monkeypatch.setenv("T_SLACK_URL", f"{recorder.url}/services/T0/B0/{HOOK_SECRET}")
    monkeypatch.setenv("T_TOKEN", TOKEN)
    monkeypatch.setenv("T_PD_KEY", "pd-routing-key-secret")
    monkeypatch.setenv("T_HOOK_URL", f"{recorder.url}/hook/{HOOK_SECRET}")
    monkeypatch.setenv("T_HOOK_SECRET", HOOK_SECRET)


def slack_bot(recorder: Recorder) -> dict[str, Any]:
    return {
        "type": "slack_bot",
        "name": "bot",
        "token": {"env": "T_TOKEN"},
        "channel": "#ops",
        "api_url": f"{recorder.url}/api/",
    }


SLACK_WEBHOOK = {"type": "slack_webhook", "name": "ops", "url": {"env": "T_SLACK_URL"}}


@pytest.mark.usefixtures("secrets_env")
def test_slack_webhook_message_is_block_kit_with_escaped_event_text(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url, [SLACK_WEBHOOK])
    rig.book.ingest(detector_update(slice_={"region": "<!channel> @here", "channel": "web"}))
    assert rig.dispatcher.step() == 1
    [req] = recorder.requests
    text = req.body.decode()
    assert "<!channel>" not in text and "@here" not in text
    message = req.json()
    [attachment] = message["attachments"]
    assert attachment["color"] == "#E01E5A"
    blob = str(attachment["blocks"])
    for needle in ("conversion_rate", "0.01", "0.07", "n=400", "2026-03-02T17:00:00Z"):
        assert needle in blob
    link = "http://grafana.test/d/opswatch-ops?var-metric=conversion_rate&var-slice="
    assert link + "region%3D%3C%21channel%3E+%40here%2Cchannel%3Dweb" in blob
    assert "http://runbooks.test/conversion_rate" in blob
    [incident] = rig.book.store.list_incidents(IncidentFilter(), 10)[0]
    assert f"<{PUBLIC}/incidents/{incident['id']}|Incident>" in blob  # the page, for people
    actions = next(b for b in attachment["blocks"] if b["type"] == "actions")["elements"]
    assert [a["action_id"] for a in actions] == ["acknowledge", "snooze", "false_alarm"]


@pytest.mark.usefixtures("secrets_env")
def test_429_waits_for_retry_after_5xx_backs_off_other_4xx_give_up(
    store_url: str, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = f"/services/T0/B0/{HOOK_SECRET}"
    recorder.answer(path, 429, b"rate_limited", {"Retry-After": "1"})
    recorder.answer(path, 500, b"internal error")
    rig = Rig(store_url, [SLACK_WEBHOOK])
    rig.book.ingest(detector_update())
    assert rig.dispatcher.step() == 0
    [row] = rig.book.store.outbox_rows()
    assert row["due_at"] == "2026-03-02T17:05:01Z"
    rig.clock.advance(seconds=1)
    assert rig.dispatcher.step() == 0  # the 500
    rig.clock.advance(seconds=2)
    assert rig.dispatcher.step() == 1
    assert len(recorder.requests) == 3
    assert (rig.count("ops", "retried"), rig.count("ops", "sent")) == (2, 1)

    recorder.answer(path, 400, b"invalid_payload", times=5)
    rig.book.ingest(detector_update(slice_={"region": "us"}))
    rig.clock.advance(minutes=10)
    rig.dispatcher.step()
    rig.clock.advance(minutes=10)
    rig.dispatcher.step()
    assert len(recorder.requests) == 4
    assert rig.count("ops", "failed") == 1
    assert rig.book.store.outbox_depth() == 0
    assert HOOK_SECRET not in caplog.text


@pytest.mark.usefixtures("secrets_env")
def test_slack_bot_posts_then_updates_and_replies_in_the_thread(
    store_url: str, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = Rig(store_url, [slack_bot(recorder)])
    update = detector_update()
    rig.book.ingest(update)
    rig.dispatcher.step()
    rig.book.act(update["id"], "acknowledge")
    rig.clock.advance(seconds=1)
    rig.dispatcher.step()
    rig.book.ingest(detector_update(window=3, status="resolved"))
    rig.clock.advance(seconds=1)
    rig.dispatcher.step()
    paths = [r.path for r in recorder.requests]
    assert paths == [
        "/api/chat.postMessage",
        "/api/chat.update",
        "/api/chat.postMessage",
        "/api/chat.update",
        "/api/chat.postMessage",
    ]
    first = recorder.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.json()["channel"] == "#ops"
    ts = "1700000000.000001"
    assert recorder.requests[1].json()["ts"] == ts
    assert recorder.requests[2].json()["thread_ts"] == ts
    assert "Acknowledged" in recorder.requests[2].json()["text"]
    assert recorder.requests[3].json()["attachments"][0]["color"] == "#2EB67D"
    assert "Resolved" in recorder.requests[4].json()["text"]
    assert TOKEN not in caplog.text


@pytest.mark.usefixtures("secrets_env")
def test_slack_bot_honours_retry_after_on_429(store_url: str, recorder: Recorder) -> None:
    recorder.answer(
        "/api/chat.postMessage", 429, b'{"ok": false, "error": "ratelimited"}', {"Retry-After": "7"}
    )
    rig = Rig(store_url, [slack_bot(recorder)])
    rig.book.ingest(detector_update())
    rig.dispatcher.step()
    [row] = rig.book.store.outbox_rows()
    assert (row["done"], row["due_at"]) == (False, "2026-03-02T17:05:07Z")


@pytest.mark.usefixtures("secrets_env")
def test_pagerduty_events_share_the_incident_as_dedup_key(
    store_url: str, recorder: Recorder
) -> None:
    pd = {
        "type": "pagerduty",
        "name": "pd",
        "routing_key": {"env": "T_PD_KEY"},
        "url": f"{recorder.url}/v2/enqueue",
    }
    rig = Rig(store_url, [pd])
    update = detector_update()
    rig.book.ingest(update)
    rig.dispatcher.step()
    rig.book.act(update["id"], "acknowledge")
    rig.dispatcher.step()
    rig.book.ingest(detector_update(window=3, status="resolved"))
    rig.dispatcher.step()
    events = [r.json() for r in recorder.to("/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    [incident_id] = {e["dedup_key"] for e in events}
    assert rig.book.store.get_incident(incident_id) is not None
    assert events[0]["payload"]["severity"] == "critical"
    assert events[0]["routing_key"] == "pd-routing-key-secret"
    assert events[0]["links"] == [
        {"href": f"{PUBLIC}/incidents/{incident_id}", "text": "opswatch incident"}
    ]


@pytest.mark.usefixtures("secrets_env")
def test_generic_webhook_is_signed_with_hmac_sha256(
    store_url: str, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig = Rig(store_url, [WEBHOOK])
    rig.book.ingest(detector_update())
    rig.dispatcher.step()
    [req] = recorder.to(f"/hook/{HOOK_SECRET}")
    stamp = req.headers["X-Opswatch-Timestamp"]
    mac = hmac.new(HOOK_SECRET.encode(), stamp.encode() + b"." + req.body, hashlib.sha256)
    assert req.headers["X-Opswatch-Signature"] == "sha256=" + mac.hexdigest()
    assert req.json()["kind"] == "trigger"
    assert HOOK_SECRET not in caplog.text


@pytest.mark.usefixtures("secrets_env")
def test_a_webhook_retry_carries_the_idempotency_key_of_its_first_attempt(
    store_url: str, recorder: Recorder
) -> None:
    recorder.answer(f"/hook/{HOOK_SECRET}", 503)
    rig = Rig(store_url, [WEBHOOK])
    rig.book.ingest(detector_update())
    rig.book.ingest(detector_update(slice_={"region": "na"}, metric="gmv"))
    rig.dispatcher.step()
    rig.clock.advance(seconds=5)
    rig.dispatcher.step()
    keys = [r.headers["Idempotency-Key"] for r in recorder.to(f"/hook/{HOOK_SECRET}")]
    assert len(keys) == 3 and len(set(keys)) == 2  # two incidents, the first one retried
    assert keys.count(keys[0]) == 2
    assert len(recorder.kept()) == 2


@pytest.mark.usefixtures("secrets_env")
def test_slack_is_paced_to_a_message_a_second_without_holding_up_others(
    store_url: str, recorder: Recorder
) -> None:
    pd = {
        "type": "pagerduty",
        "name": "pd",
        "routing_key": {"env": "T_PD_KEY"},
        "url": f"{recorder.url}/v2/enqueue",
    }
    rig = Rig(store_url, [SLACK_WEBHOOK, pd])
    for region in ("eu", "us", "apac"):
        rig.book.ingest(detector_update(slice_={"region": region}))
    assert rig.dispatcher.step() == 4  # one Slack message, three PagerDuty events
    rig.clock.advance(seconds=1)
    assert rig.dispatcher.step() == 1
    rig.clock.advance(seconds=1)
    assert rig.dispatcher.step() == 1
    assert len(recorder.to(f"/services/T0/B0/{HOOK_SECRET}")) == 3


def test_one_alertmanager_down_does_not_hold_back_another(
    store_url: str, recorder: Recorder
) -> None:
    recorder.answer("/down/api/v2/alerts", 503, times=100)
    am = {"type": "alertmanager", "name": "am", "urls": [f"{recorder.url}/down", recorder.url]}
    rig = Rig(store_url, [am])
    rig.book.ingest(detector_update())
    for _ in range(3):
        rig.dispatcher.step()
        rig.clock.advance(minutes=1)
    assert len(recorder.to("/api/v2/alerts")) == 3  # every push reached the healthy one
    assert rig.count("am#0", "retried") >= 1 and rig.count("am#1", "sent") == 3


@pytest.mark.usefixtures("secrets_env")
def test_a_sender_that_raises_is_retried_counted_and_given_up(store_url: str) -> None:
    rig = Rig(store_url, [WEBHOOK])

    class Broken:
        paced = False

        def send(self, row: Any, ref: Any) -> Any:
            raise KeyError("surprise")

    rig.dispatcher.senders = {"hook": Broken()}
    rig.book.ingest(detector_update())
    for _ in range(15):
        rig.dispatcher.step()
        rig.clock.advance(minutes=6)
    assert rig.count("hook", "failed") == 1 and rig.count("hook", "retried") == 11
    assert rig.book.store.outbox_depth() == 0
