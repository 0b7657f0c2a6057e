"""The daily digest: figures from the store, the schedule, and the command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from typer.testing import CliRunner

from services.alerting import digest
from services.alerting.api.deps import Auth
from services.alerting.app import create_app
from services.alerting.book import AlertBook
from services.alerting.routing import AlertingConfig, DigestConfig, Routing
from services.alerting.store import AlertStore
from services.cli import app
from tests.factories import FakeClock, detector_update
from tests.recording import recording_server

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
READ = "digest-read-token-0123456789"
FAMILIES = {"conversion_rate": "conversion", "gmv": "orders", "avg_rating": "feedback"}


def day_of_incidents(path: Path) -> tuple[AlertBook, FakeClock]:
    """Three incidents: a warning acknowledged after 10 minutes and resolved after 40,
    a critical one resolved by the detector after 20, a critical one still firing;
    two labels."""
    clock = FakeClock(T)
    book = AlertBook(
        AlertStore(f"sqlite:///{path}"), FAMILIES, Routing(AlertingConfig(), FAMILIES), clock
    )
    first = detector_update(observed=0.02, expected=0.08, severity="warning")
    book.ingest(first)
    clock.advance(minutes=10)
    book.act(first["id"], "acknowledge")
    clock.advance(minutes=30)
    book.act(first["id"], "resolve")
    book.act(first["id"], "label", label="true_positive")
    clock.now = T + timedelta(hours=2)
    second = detector_update(
        metric="gmv", start=T + timedelta(hours=2), observed=900.0, expected=300.0, direction="up"
    )
    book.ingest(second)
    clock.advance(minutes=20)
    book.ingest(
        detector_update(
            metric="gmv",
            start=T + timedelta(hours=2),
            window=3,
            status="resolved",
            observed=900.0,
            expected=300.0,
            direction="up",
        )
    )
    book.act(second["id"], "label", label="false_positive")
    clock.now = T + timedelta(hours=5)
    book.ingest(
        detector_update(
            metric="avg_rating", start=T + timedelta(hours=5), observed=3.9, expected=4.2
        )
    )
    return book, clock


def test_the_digest_counts_times_movers_and_precision(tmp_path: Path) -> None:
    book, clock = day_of_incidents(tmp_path / "a.db")
    d = digest.build(book.store, clock.now + timedelta(hours=1))
    assert len(d.incidents) == 3
    assert d.time_to_acknowledge_s == [600.0]
    assert sorted(d.time_to_resolve_s) == [1200.0, 2400.0]
    assert [m.metric for m in d.movers] == ["gmv", "conversion_rate", "avg_rating"]
    assert d.movers[0].change == pytest.approx(2.0)
    assert d.precision == 0.5
    text = digest.markdown(d)
    assert "Incidents: **3** (1 still open)" in text
    assert "Median time to acknowledge: **10 min** (1 acknowledged)" in text
    assert "Median time to resolve: **30 min** (2 resolved)" in text
    assert "**50%** of 2 labelled alerts" in text
    assert "| gmv | region=eu, channel=web | 900 | 300 | +200% | - |" in text
    assert digest.build(book.store, clock.now + timedelta(days=2)).incidents == []


def test_the_scheduled_digest_is_accepted_once_a_day_after_its_time(tmp_path: Path) -> None:
    book, clock = day_of_incidents(tmp_path / "a.db")
    cfg = AlertingConfig.model_validate(
        {
            "receivers": [{"type": "slack_webhook", "name": "ops", "url": {"env": "X"}}],
            "digest": {"at": "23:30", "timezone": "Europe/Berlin", "receivers": ["ops"]},
        }
    )
    assert isinstance(cfg.digest, DigestConfig)
    clock.now = datetime(2026, 3, 2, 22, 29, tzinfo=UTC)  # 23:29 in Berlin
    run = digest.scheduler(book, cfg.digest)
    assert run() == 0
    clock.advance(minutes=1)
    assert run() == 1 and run() == 0
    again = digest.scheduler(book, cfg.digest)  # a restart, or another replica
    assert again() == 0
    [row] = book.store.outbox_rows()
    assert row["kind"] == "digest" and "Incidents: **3**" in row["payload"]["markdown"]


def test_digest_receivers_must_take_a_digest() -> None:
    with pytest.raises(ValueError, match="must be a Slack or webhook receiver"):
        AlertingConfig.model_validate(
            {
                "receivers": [{"type": "alertmanager", "name": "am", "urls": ["http://x"]}],
                "digest": {"receivers": ["am"]},
            }
        )


@pytest.mark.usefixtures("own_logging")
def test_opswatch_digest_prints_markdown_and_posts_to_slack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    day_of_incidents(db)
    with recording_server() as slack:
        config = tmp_path / "alerting.yaml"
        config.write_text(
            "receivers:\n"
            "  - {type: slack_webhook, name: ops, url: {env: T_SLACK}}\n"
            "digest: {receivers: [ops]}\n"
        )
        monkeypatch.setenv("T_SLACK", f"{slack.url}/services/T/B/secret")
        monkeypatch.setenv("OPSWATCH_DATABASE_URL", f"sqlite:///{db}")
        monkeypatch.setenv("OPSWATCH_ALERTING_CONFIG", str(config))
        result = CliRunner().invoke(app, ["digest", "--until", "2026-03-03T00:00:00Z", "--post"])
        assert result.exit_code == 0, result.output
        assert "# opswatch daily digest" in result.output
        [posted] = slack.requests
        blocks = posted.json()["blocks"]
        assert "Incidents: **3**" in blocks[1]["text"]["text"]


@pytest.mark.usefixtures("own_logging")
def test_the_posted_digest_shows_the_main_incidents_charts_that_open_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    book, _ = day_of_incidents(db)
    with recording_server() as slack:
        config = tmp_path / "alerting.yaml"
        config.write_text(
            "receivers:\n"
            "  - {type: slack_webhook, name: ops, url: {env: T_SLACK}}\n"
            "digest: {receivers: [ops]}\n"
        )
        monkeypatch.setenv("T_SLACK", f"{slack.url}/services/T/B/secret")
        monkeypatch.setenv("OPSWATCH_DATABASE_URL", f"sqlite:///{db}")
        monkeypatch.setenv("OPSWATCH_ALERTING_CONFIG", str(config))
        monkeypatch.setenv("OPSWATCH_PUBLIC_URL", "https://opswatch.example.com/ops")
        monkeypatch.setenv("OPSWATCH_API_READ_TOKEN", READ)
        result = CliRunner().invoke(app, ["digest", "--until", "2026-03-03T00:00:00Z", "--post"])
        assert result.exit_code == 0, result.output
        [posted] = slack.requests
    images = [b for b in posted.json()["blocks"] if b["type"] == "image"]
    # the critical incidents first, the earliest first among them; the warning last
    assert [i["title"]["text"] for i in images] == [
        "gmv rose in region=eu, channel=web",
        "avg_rating dropped in region=eu, channel=web",
        "conversion_rate dropped in region=eu, channel=web",
    ]
    api = TestClient(create_app(book, CollectorRegistry(), auth=Auth(read_token=SecretStr(READ))))
    for image in images:
        url = urlsplit(image["image_url"])
        assert url.netloc == "opswatch.example.com" and url.path.startswith("/ops/v1/incidents/")
        chart = api.get(url.path.removeprefix("/ops") + "?" + url.query)
        assert chart.status_code == 200 and chart.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert api.get(url.path.removeprefix("/ops")).status_code == 401
