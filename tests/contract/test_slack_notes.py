"""Notes from Slack, through the official slack_sdk against a local recording
server: a bot's incident message has an Add note button that opens a modal
(views.open), and the modal's submission stores the note, replies with it in the
incident's thread, and shows it on the incident's page and in the API."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting import incidents as inc
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.metrics import Metrics
from services.alerting.notify import Dispatcher, build_senders
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore, IncidentFilter
from tests.factories import FakeClock, detector_update
from tests.recording import Recorder, recording_server

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
READ, WRITE, SIGNING = "r" * 24, "w" * 24, "s" * 32
FAMILIES = {"conversion_rate": "conversion"}
INTERACTIONS = "/v1/slack/interactions"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    with recording_server() as rec:
        monkeypatch.setenv("T_TOKEN", "xoxb-0123456789-secret")
        yield rec


class Rig:
    def __init__(self, store_url: str, recorder: Recorder) -> None:
        self.clock = FakeClock(T + timedelta(minutes=5))
        bot = {
            "type": "slack_bot",
            "name": "bot",
            "token": {"env": "T_TOKEN"},
            "channel": "#ops",
            "api_url": f"{recorder.url}/api/",
        }
        config = AlertingConfig.model_validate(
            {"receivers": [bot], "routes": [{"receivers": ["bot"]}]}
        )
        self.book = AlertBook(
            AlertStore(store_url),
            FAMILIES,
            Routing(config, FAMILIES),
            self.clock,
            notify=inc.NotifyPolicy(group_wait=timedelta(0)),
        )
        senders = build_senders(config, self.clock)
        self.dispatcher = Dispatcher(
            self.book, senders, Metrics.create(CollectorRegistry(), list(senders))
        )
        app = create_app(
            self.book,
            CollectorRegistry(),
            senders=senders,
            auth=Auth(SecretStr(WRITE), SecretStr(READ)),
            slack_signing_secret=SecretStr(SIGNING),
        )
        self.api = TestClient(app)  # not started: the rig's dispatcher sends

    def slack(self, payload: dict[str, Any], secret: str = SIGNING) -> Any:
        """A request as Slack signs it, at the rig's time."""
        body = urlencode({"payload": orjson.dumps(payload).decode()})
        stamp = str(int(self.clock().timestamp()))
        mac = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": f"v0={mac.hexdigest()}",
        }
        return self.api.post(INTERACTIONS, content=body, headers=headers)


def click(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "trigger_id": "1337.42.abcdef",
        "user": {"id": "U1", "username": "ana"},
        "actions": [{"action_id": action["action_id"], "value": action["value"]}],
    }


def submission(view: dict[str, Any], kind: str, text: str) -> dict[str, Any]:
    """What Slack sends when the modal is submitted with these values."""
    option = next(o for o in view["blocks"][1]["element"]["options"] if o["value"] == kind)
    return {
        "type": "view_submission",
        "user": {"id": "U1", "username": "ana"},
        "view": {
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {
                "values": {
                    "kind": {"kind": {"type": "static_select", "selected_option": option}},
                    "text": {"text": {"type": "plain_text_input", "value": text}},
                }
            },
        },
    }


def test_add_note_opens_a_modal_whose_submission_lands_in_the_thread_page_and_api(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url, recorder)
    rig.book.ingest(detector_update())
    assert rig.dispatcher.step() == 1
    [post] = recorder.to("/api/chat.postMessage")
    message = post.json()
    blocks = [b for a in message["attachments"] for b in a["blocks"]]
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    add = next(a for a in actions if a["action_id"] == "add_note")
    [incident] = rig.book.store.list_incidents(IncidentFilter(), 10)[0]
    assert add["value"] == incident["id"]

    assert rig.slack(click(add), secret="t" * 32).status_code == 401
    opened = rig.slack(click(add))
    assert opened.status_code == 200, opened.text
    [request] = recorder.to("/api/views.open")
    sent = request.json()
    assert sent["trigger_id"] == "1337.42.abcdef"
    view = sent["view"]
    assert view["type"] == "modal" and view["private_metadata"] == incident["id"]
    assert incident["title"] in str(view["blocks"][0])

    empty = rig.slack(submission(view, "cause", "   "))
    assert empty.json()["response_action"] == "errors" and "text" in empty.json()["errors"]
    done = rig.slack(submission(view, "cause", "PSP <timeouts> after the deploy"))
    assert done.status_code == 200 and done.content == b""

    reply = recorder.to("/api/chat.postMessage")[-1].json()
    assert reply["channel"] == "C0OPS" and reply["thread_ts"] == "1700000000.000001"
    assert reply["text"] == "Note (cause) by ana: PSP &lt;timeouts&gt; after the deploy"
    bearer = {"Authorization": f"Bearer {READ}"}
    [note] = rig.api.get(f"/v1/incidents/{incident['id']}", headers=bearer).json()["notes"]
    assert (note["author"], note["kind"], note["text"]) == (
        "ana",
        "cause",
        "PSP <timeouts> after the deploy",
    )
    page = rig.api.get(f"/incidents/{incident['id']}", headers=bearer).text
    assert "PSP &lt;timeouts&gt; after the deploy" in page


def test_a_note_for_an_unknown_incident_is_refused_and_nothing_is_posted(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url, recorder)
    missing = rig.slack(click({"action_id": "add_note", "value": "0" * 32}))
    assert missing.status_code == 404 and missing.json()["title"] == "Incident not found"
    assert not recorder.requests
    view = {
        "callback_id": "add_note",
        "private_metadata": "0" * 32,
        "blocks": [{}, {"element": {"options": [{"value": "lesson"}]}}],
    }
    gone = rig.slack(submission(view, "lesson", "check the PSP first"))
    assert gone.json() == {
        "response_action": "errors",
        "errors": {"text": "no incident '" + "0" * 32 + "' any more"},
    }
    assert not recorder.requests
