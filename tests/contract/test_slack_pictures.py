"""What on-call sees in Slack with OPSWATCH_PUBLIC_URL set, through the official
slack_sdk against a local recording server: the incident's chart as an image whose
signed URL opens without the read token (and not once tampered with or expired),
and a signed link to the incident's page that lets its chart load."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.alerting import incidents as inc
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.links import LINK_COOKIE, LinkSigner, PublicLinks
from services.alerting.metrics import Metrics
from services.alerting.notify import Dispatcher, build_senders
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore, IncidentFilter
from tests.factories import FakeClock, detector_update, iso
from tests.recording import Recorder, recording_server

# now, to the window: a cookie jar keeps a link's cookie on its own, real, clock
T = datetime.now(UTC).replace(second=0, microsecond=0)
T -= timedelta(minutes=T.minute % 5)
PUBLIC = "https://opswatch.example.com"
READ, WRITE = "r" * 24, "w" * 24
FAMILIES = {"conversion_rate": "conversion"}
HOOK = "/services/T0/B0/hook-secret-0123456789"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    with recording_server() as rec:
        monkeypatch.setenv("T_SLACK_URL", rec.url + HOOK)
        yield rec


class Rig:
    """The alerting service's parts as runtime.build makes them with
    OPSWATCH_PUBLIC_URL set (or not), and its API for what Slack and people fetch."""

    def __init__(self, store_url: str, public_url: str | None = PUBLIC) -> None:
        self.clock = FakeClock(T + timedelta(minutes=5))
        config = AlertingConfig.model_validate(
            {
                "receivers": [
                    {"type": "slack_webhook", "name": "ops", "url": {"env": "T_SLACK_URL"}}
                ],
                "routes": [{"receivers": ["ops"]}],
            }
        )
        self.book = AlertBook(
            AlertStore(store_url),
            FAMILIES,
            Routing(config, FAMILIES),
            self.clock,
            notify=inc.NotifyPolicy(group_wait=timedelta(0)),
        )
        auth = Auth(SecretStr(WRITE), SecretStr(READ))
        public = None
        if public_url is not None:
            signer = LinkSigner.for_read_token(auth.read_token)
            public = PublicLinks(public_url, signer, timedelta(days=7), self.clock)
        senders = build_senders(config, self.clock, public)
        self.dispatcher = Dispatcher(
            self.book, senders, Metrics.create(CollectorRegistry(), list(senders))
        )
        self.api = TestClient(create_app(self.book, CollectorRegistry(), auth=auth))

    def incident(self) -> dict[str, Any]:
        [incident] = self.book.store.list_incidents(IncidentFilter(), 10)[0]
        return incident

    def fetch(self, url: str) -> Any:
        """What Slack or a browser gets for a URL of the message: no token."""
        assert url.startswith(PUBLIC + "/")
        parts = urlsplit(url)
        return self.api.get(parts.path + ("?" + parts.query if parts.query else ""))


def history() -> list[list[Any]]:
    w = timedelta(minutes=5)
    return [[iso(T - w * k), 0.07, 0.07, 0.05, 0.09] for k in range(12, 0, -1)]


def blocks_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for a in message["attachments"] for b in a["blocks"]]


def test_the_slack_message_shows_the_chart_that_slack_fetches_without_the_token(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url)
    rig.book.ingest(detector_update(slice_={"region": "eu"}, start=T, series=history()))
    assert rig.dispatcher.step() == 1
    [image] = [b for b in blocks_of(recorder.requests[0].json()) if b["type"] == "image"]
    incident_id = rig.incident()["id"]
    url = image["image_url"]
    assert url.startswith(f"{PUBLIC}/v1/incidents/{incident_id}/chart.png?expires=")
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    assert expires == int((rig.clock() + timedelta(days=7)).timestamp())
    assert "conversion_rate" in image["alt_text"]

    chart = rig.fetch(url)
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content[:8] == PNG_MAGIC
    unsigned = rig.api.get(f"/v1/incidents/{incident_id}/chart.png")
    assert unsigned.status_code == 401


def test_a_tampered_or_expired_chart_link_is_refused_with_a_problem(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url)
    rig.book.ingest(detector_update(start=T, series=history()))
    rig.dispatcher.step()
    [image] = [b for b in blocks_of(recorder.requests[0].json()) if b["type"] == "image"]
    url = image["image_url"]
    signature = parse_qs(urlsplit(url).query)["signature"][0]
    tampered = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    for bad in (tampered, url.replace("expires=", "expires=9")):
        refused = rig.fetch(bad)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "Bad link signature"
    assert rig.fetch(url.replace(rig.incident()["id"], "0" * 32)).status_code == 401

    rig.clock.advance(days=7, seconds=1)
    expired = rig.fetch(url)
    assert expired.status_code == 401 and expired.json()["title"] == "Link expired"
    assert "open the incident from a newer notification" in expired.json()["detail"]


def test_the_signed_incident_link_opens_the_page_and_its_chart_loads(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url)
    rig.book.ingest(detector_update(start=T, series=history()))
    rig.dispatcher.step()
    incident_id = rig.incident()["id"]
    text = str(blocks_of(recorder.requests[0].json()))
    link = text.split(f"<{PUBLIC}/incidents/{incident_id}?", 1)[1].split("|Incident>", maxsplit=1)[
        0
    ]
    assert "expires=" in link and "signature=" in link and READ not in text

    page = rig.fetch(f"{PUBLIC}/incidents/{incident_id}?{link}")
    assert page.status_code == 200 and "conversion_rate" in page.text
    assert rig.api.cookies.get(LINK_COOKIE + incident_id)
    chart = rig.api.get(f"/v1/incidents/{incident_id}/chart.png")  # as the page's <img>
    assert chart.status_code == 200 and chart.content[:8] == PNG_MAGIC
    assert rig.api.get("/v1/incidents").status_code == 401  # nothing else opens

    rig.api.cookies.clear()
    rig.clock.advance(days=8)
    expired = rig.fetch(f"{PUBLIC}/incidents/{incident_id}?{link}")
    assert expired.status_code == 401 and "Link expired" in expired.text


def test_without_a_public_url_messages_carry_no_image_and_plain_links(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url, public_url=None)
    rig.book.ingest(detector_update(start=T, series=history()))
    rig.dispatcher.step()
    blocks = blocks_of(recorder.requests[0].json())
    assert not [b for b in blocks if b["type"] == "image"]
    incident_id = rig.incident()["id"]
    assert f"<http://127.0.0.1:8080/incidents/{incident_id}|Incident>" in str(blocks)


def test_the_read_token_still_opens_pages_and_charts_as_header_or_cookie(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url)
    rig.book.ingest(detector_update(start=T, series=history()))
    incident_id = rig.incident()["id"]
    bearer = {"Authorization": f"Bearer {READ}"}
    assert rig.api.get(f"/incidents/{incident_id}", headers=bearer).status_code == 200
    rig.api.cookies.set("opswatch_read", READ)
    assert rig.api.get(f"/v1/incidents/{incident_id}/chart.png").status_code == 200
    assert rig.api.get("/incidents").status_code == 200


def test_a_new_incident_message_lists_similar_past_incidents_with_their_notes(
    store_url: str, recorder: Recorder
) -> None:
    rig = Rig(store_url)
    day_before = T - timedelta(days=1)
    for region, note in (("eu", "PSP timeouts after the deploy"), ("us", "CDN outage")):
        rig.clock.now = day_before + timedelta(minutes=5)
        past = detector_update(slice_={"region": region, "channel": "web"}, start=day_before)
        rig.book.ingest(past)
        rig.clock.advance(minutes=40)
        rig.book.act(past["id"], "resolve")
        rig.book.act(past["id"], "label", label="true_positive")
        incident_id = rig.book.store.get(past["id"])["incident_id"]  # type: ignore[index]
        rig.book.store.add_note(incident_id, "ana", "action", "rolled back", rig.clock())
        rig.book.store.add_note(incident_id, "ana", "cause", note, rig.clock())
    rig.dispatcher.step()
    recorder.requests.clear()

    rig.clock.now = T + timedelta(minutes=5)
    rig.book.ingest(detector_update(slice_={"region": "eu"}, start=T, series=history()))
    assert rig.dispatcher.step() == 1
    blocks = blocks_of(recorder.requests[0].json())
    [similar] = [b for b in blocks if "Similar past incidents" in b.get("text", {}).get("text", "")]
    text = similar["text"]["text"]
    assert "CDN outage" not in text  # region=us is not related to region=eu
    [line] = text.splitlines()[1:]
    assert "conversion_rate dropped in region=eu, channel=web>" in line
    assert "resolved in 45 min, label true_positive" in line
    assert line.endswith("cause: PSP timeouts after the deploy; action: rolled back")
    link = line.split("<", 1)[1].split("|", 1)[0]
    assert link.startswith(f"{PUBLIC}/incidents/") and "signature=" in link
    page = rig.fetch(link)
    assert page.status_code == 200 and "PSP timeouts after the deploy" in page.text
