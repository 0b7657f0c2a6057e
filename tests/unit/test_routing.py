"""The alerting configuration: the shipped example loads, routes and mutes as documented."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.alerting.routing import ConfigError, Routing, load_config

EXAMPLE = Path(__file__).parents[2] / "deploy" / "alerting.example.yaml"
FAMILIES = {"conversion_rate": "conversion", "gmv": "orders", "churn_actions": "churn"}


def routing() -> Routing:
    return Routing(load_config(EXAMPLE), FAMILIES)


AM = ["platform-alertmanager#0", "platform-alertmanager#1"]  # one target per Alertmanager


@pytest.mark.parametrize(
    ("metric", "severity", "receivers"),
    [
        ("conversion_rate", "critical", ["ops-bot", *AM, "pagerduty"]),
        ("conversion_rate", "warning", ["ops-bot", *AM]),
        ("churn_actions", "critical", ["ops-bot", *AM, "data-team"]),
    ],
)
def test_routes_of_the_example(metric: str, severity: str, receivers: list[str]) -> None:
    r = routing()
    labels = r.labels({"metric": metric, "slice": {"region": "eu"}}, severity)
    assert r.receivers_for([labels]) == receivers


@pytest.mark.parametrize(
    ("at", "metric", "muted"),
    [
        (datetime(2026, 3, 3, 1, 30, tzinfo=UTC), "gmv", True),  # Tue 02:30 Berlin
        (datetime(2026, 3, 3, 1, 30, tzinfo=UTC), "conversion_rate", False),
        (datetime(2026, 3, 3, 2, 30, tzinfo=UTC), "gmv", False),  # 03:30: over
        (datetime(2026, 3, 8, 1, 30, tzinfo=UTC), "gmv", False),  # a Sunday
    ],
)
def test_the_nightly_mute_window(at: datetime, metric: str, muted: bool) -> None:
    r = routing()
    labels = r.labels({"metric": metric, "slice": {}}, "critical")
    assert r.muted(labels, at) is muted


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    from services.alerting.routing import MuteWindow

    w = MuteWindow.model_validate(
        {"name": "n", "weekdays": ["fri"], "start": "23:00", "end": "01:00"}
    )
    assert w.active(datetime(2026, 3, 6, 23, 30, tzinfo=UTC))  # Friday
    assert w.active(datetime(2026, 3, 7, 0, 30, tzinfo=UTC))  # early Saturday
    assert not w.active(datetime(2026, 3, 8, 0, 30, tzinfo=UTC))  # early Sunday


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: [{receivers: [nobody]}]", "unknown receivers ['nobody']"),
        ("routes: [{match: {colour: [red]}, receivers: []}]", "unknown match keys"),
        ("receivers: [{type: carrier_pigeon, name: p}]", "receivers.0"),
        ("mute_windows: [{name: n, start: '25:00', end: '01:00'}]", "mute_windows.0.start"),
        (
            "receivers: []\nmute_windows:\n  - {name: n, start: '25:00', end: '01:00'}",
            "alerting.yaml line 3: mute_windows.0.start",
        ),
        ("receivers: [", "line 1: not valid YAML"),
        ("receivers: [{name: caf\xe9}]", "line 1: the alerting config is not UTF-8 text"),
    ],
)
def test_a_bad_config_names_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerting.yaml"
    path.write_bytes(text.encode("latin-1"))  # ASCII as in UTF-8, "café" not UTF-8
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as bad:
        load_config(path)
    assert "Value error" not in str(bad.value)  # the check's own words, not pydantic's


def test_a_missing_secret_is_named_without_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.alerting.notify import build_senders

    monkeypatch.delenv("OPSWATCH_SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(ConfigError, match="OPSWATCH_SLACK_WEBHOOK_URL is not set"):
        build_senders(load_config(EXAMPLE), lambda: datetime.now(UTC))
