"""Similar past incidents and the post-incident review: the knowledge base shown
when it matters, in the API, on the page and as Markdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from typer.testing import CliRunner

from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.review import similar
from services.alerting.routing import AlertingConfig, Routing
from services.alerting.store import AlertStore
from services.cli import app as cli
from tests.factories import FakeClock, detector_update, iso

WRITE = {"Authorization": "Bearer " + "w" * 24}
DAY0 = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
FAMILIES = {"conversion_rate": "conversion", "gmv": "orders"}


def past(
    i: int, slice_: dict[str, str], family: str = "conversion", status: str = "resolved"
) -> dict[str, Any]:
    opened = iso(DAY0 + timedelta(days=i))
    return {
        "id": f"{i:032x}",
        "title": f"incident {i}",
        "family": family,
        "status": status,
        "slice": slice_,
        "opened_at": opened,
        "started_at": opened,
        "resolved_at": iso(DAY0 + timedelta(days=i, minutes=45)),
        "notes": [],
        "labels": ["true_positive"],
    }


def test_similar_ranks_related_resolved_incidents_of_the_family_by_overlap_then_recency() -> None:
    now = {"id": "f" * 32, "family": "conversion", "slice": {"region": "eu", "channel": "web"}}
    found = similar(
        now,
        [
            past(1, {"region": "eu", "channel": "web"}),  # both dimensions, old
            past(2, {"region": "eu"}),  # one dimension
            past(3, {}),  # all-up: related, shares nothing
            past(4, {"region": "eu", "channel": "web"}),  # both dimensions, recent
            past(5, {"region": "na"}),  # another region: not related
            past(6, {"region": "eu"}, family="orders"),  # another family
            past(7, {"region": "eu"}, status="firing"),  # not resolved
            past(8, {"region": "eu", "platform": "ios"}),  # one dimension, most recent
        ],
    )
    assert [s["title"] for s in found] == ["incident 4", "incident 1", "incident 8"]
    assert found[0]["resolve_s"] == 45 * 60 and found[0]["label"] == "true_positive"


@pytest.fixture
def book(store_url: str) -> AlertBook:
    return AlertBook(
        AlertStore(store_url), FAMILIES, Routing(AlertingConfig(), FAMILIES), FakeClock()
    )


def episode(
    client: TestClient, slice_: dict[str, str], start: datetime, resolve: bool
) -> dict[str, Any]:
    intake = client.app.state.intake  # type: ignore[attr-defined]
    history = [[iso(start - timedelta(minutes=5)), 0.07, 0.07, 0.05, 0.09]]
    first = detector_update(slice_=slice_, start=start, series=history)
    intake.handle(first)
    intake.handle(detector_update(slice_=slice_, start=start, window=1, observed=0.02))
    if resolve:
        intake.handle(detector_update(slice_=slice_, start=start, window=4, status="resolved"))
    alert = client.get(f"/v1/alerts/{first['id']}").json()
    return dict(client.get(f"/v1/incidents/{alert['incident_id']}").json())


def test_a_new_incident_shows_what_was_learned_last_time(book: AlertBook) -> None:
    client = TestClient(
        create_app(book, CollectorRegistry(), auth=Auth(SecretStr("w" * 24))), headers=WRITE
    )
    before = episode(client, {"region": "eu", "channel": "web"}, DAY0 - timedelta(days=7), True)
    client.post(f"/v1/alerts/{before['alert_ids'][0]}/label", json={"label": "false_positive"})
    note = {"author": "ana", "text": "a marketing email moved traffic", "kind": "cause"}
    client.post(f"/v1/incidents/{before['id']}/notes", json=note)
    episode(client, {"region": "na"}, DAY0 - timedelta(days=3), True)  # not related

    now = episode(client, {"region": "eu"}, DAY0, False)
    [like] = now["similar"]
    assert like["id"] == before["id"] and like["label"] == "false_positive"
    assert like["resolve_s"] == 25 * 60  # five windows, to the end of the resolving one
    assert [n["text"] for n in like["notes"]] == ["a marketing email moved traffic"]

    page = client.get(f"/incidents/{now['id']}").text
    similar_part = page[page.index('id="similar"') :]
    assert "a marketing email moved traffic" in similar_part
    assert "resolved in 25 min" in similar_part and "false_positive" in similar_part

    review = client.get(f"/v1/incidents/{before['id']}/review")
    assert review.headers["content-type"].startswith("text/markdown")
    text = review.text
    assert text.startswith("# Review: conversion_rate dropped in region=eu, channel=web\n")
    for heading in ("Summary", "Timeline", "Impact", "Chart", "Notes"):
        assert f"\n## {heading}\n" in text
    # the two anomalous windows (0.01 and 0.02 against 0.07 each), not the history
    assert "Over 2 anomalous window(s)" in text
    assert "observed 0.03 against 0.14 expected, a difference of -0.11" in text
    assert f"/v1/incidents/{before['id']}/chart.png)" in text
    assert "- **cause** (ana): a marketing email moved traffic" in text
    assert "- Label: false_positive" in text
    assert client.get(f"/v1/incidents/{'0' * 32}/review").status_code == 404


@pytest.mark.usefixtures("own_logging")
def test_opswatch_review_prints_the_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    book = AlertBook(AlertStore(url), FAMILIES, Routing(AlertingConfig(), FAMILIES), FakeClock())
    client = TestClient(create_app(book, CollectorRegistry()))
    incident = episode(client, {"region": "eu"}, DAY0, True)
    monkeypatch.setenv("OPSWATCH_DATABASE_URL", url)
    monkeypatch.setenv("OPSWATCH_TIMEZONE", "Europe/Berlin")
    result = CliRunner().invoke(cli, ["review", incident["id"]])
    assert result.exit_code == 0, result.output
    assert "# Review: conversion_rate dropped in region=eu" in result.output
    assert "Started 2026-03-02 18:00 CET, resolved 2026-03-02 18:25 CET (25 min)" in result.output
    missing = CliRunner().invoke(cli, ["review", "0" * 32])
    assert missing.exit_code == 1
