"""Receivers, routes and mute windows, from the alerting configuration file.

The file is YAML (``OPSWATCH_ALERTING_CONFIG``); see ``deploy/alerting.example.yaml``.
Secrets (webhook URLs, tokens, keys) are never written in it: a secret field is
``{env: NAME}`` or ``{file: PATH}``, read once at start-up, kept as a
``SecretStr`` (so it never shows in a log or a repr).

Every route whose matchers all hold adds its receivers; a route without
matchers catches everything. A mute window silences the notifications of the
incidents it matches while it lasts (detection and the store go on); an
incident that is still firing when it ends is notified then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from services.common.config import known_timezone
from services.common.contracts import DIMENSIONS
from services.detector.engine.yamlfile import first_error, line_of, located, read_yaml

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DIGEST_KINDS = ("slack_webhook", "slack_bot", "webhook")
MATCH_KEYS = ("severity", "metric", "family", *DIMENSIONS)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the place."""


class SecretRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: Path | None = None

    def resolve(self, where: str) -> SecretStr:
        if (self.env is None) == (self.file is None):
            raise ConfigError(f"{where}: give exactly one of env or file")
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"{where}: environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text().strip())
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {self.file}: {exc.strerror}") from None


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackWebhook(_Base):
    type: Literal["slack_webhook"]
    name: str
    url: SecretRef


class SlackBot(_Base):
    type: Literal["slack_bot"]
    name: str
    token: SecretRef
    channel: str
    api_url: str = "https://slack.com/api/"


class Alertmanager(_Base):
    type: Literal["alertmanager"]
    name: str
    urls: Annotated[list[str], Field(min_length=1)]


class PagerDuty(_Base):
    type: Literal["pagerduty"]
    name: str
    routing_key: SecretRef
    url: str = "https://events.pagerduty.com/v2/enqueue"


class Webhook(_Base):
    type: Literal["webhook"]
    name: str
    url: SecretRef
    secret: SecretRef


ReceiverConfig = Annotated[
    SlackWebhook | SlackBot | Alertmanager | PagerDuty | Webhook, Field(discriminator="type")
]


class Route(_Base):
    match: dict[str, list[str]] = Field(default_factory=dict)
    receivers: Annotated[list[str], Field(min_length=1)]

    @field_validator("match")
    @classmethod
    def _known_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(MATCH_KEYS))
        if unknown:
            raise ValueError(f"unknown match keys {unknown}; use {list(MATCH_KEYS)}")
        return value


class MuteWindow(_Base):
    name: str
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS))
    start: time
    end: time
    timezone: str = "UTC"
    match: dict[str, list[str]] = Field(default_factory=dict)

    _known_timezone = field_validator("timezone")(known_timezone)

    def active(self, now: datetime) -> bool:
        """Whether ``now`` falls in the window; a window may run past midnight."""
        local = now.astimezone(ZoneInfo(self.timezone))
        t = local.time().replace(tzinfo=None)
        day = WEEKDAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.weekdays and self.start <= t < self.end
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        return (day in self.weekdays and t >= self.start) or (
            yesterday in self.weekdays and t < self.end
        )


class DigestConfig(_Base):
    at: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "08:00"
    timezone: str = "UTC"
    receivers: Annotated[list[str], Field(min_length=1)]

    _known_timezone = field_validator("timezone")(known_timezone)


class AlertingConfig(_Base):
    public_url: str = "http://127.0.0.1:8080"
    grafana_url: str | None = None
    runbook_url: str | None = Field(
        None, description="a template with {metric}, e.g. https://runbooks.example/{metric}"
    )
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    mute_windows: list[MuteWindow] = Field(default_factory=list)
    digest: DigestConfig | None = Field(
        None, description="post the daily digest to these Slack or webhook receivers"
    )

    @field_validator("runbook_url")
    @classmethod
    def _runbook_template(cls, value: str | None) -> str | None:
        try:
            if value is not None:
                value.format(metric="m")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may use {metric} and nothing else in braces") from None
        return value

    @field_validator("routes")
    @classmethod
    def _routes_name_receivers(cls, routes: list[Route], info: Any) -> list[Route]:
        names = {r.name for r in info.data.get("receivers", [])}
        for i, route in enumerate(routes):
            missing = sorted(set(route.receivers) - names)
            if missing:
                raise ValueError(f"route {i} names unknown receivers {missing}")
        return routes

    @field_validator("digest")
    @classmethod
    def _digest_receivers(cls, digest: DigestConfig | None, info: Any) -> DigestConfig | None:
        kinds = {r.name: r.type for r in info.data.get("receivers", [])}
        for name in digest.receivers if digest else ():
            if kinds.get(name) not in DIGEST_KINDS:
                raise ValueError(f"digest receiver {name!r} must be a Slack or webhook receiver")
        return digest


def load_config(path: Path | None) -> AlertingConfig:
    if path is None:
        return AlertingConfig()
    text, data = read_yaml(path, "alerting config", ConfigError)
    try:
        return AlertingConfig.model_validate(data or {})
    except ValidationError as exc:
        loc, message = first_error(exc)
        raise ConfigError(located(path, line_of(text, loc), loc, message)) from None


def _matches(match: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) in values for k, values in match.items())


def targets(receiver: ReceiverConfig) -> list[tuple[str, str | None]]:
    """(target name, URL) of a receiver: an Alertmanager with several URLs is one
    target per URL (``name#0``, ``name#1``...); any other receiver is itself."""
    if not isinstance(receiver, Alertmanager):
        return [(receiver.name, None)]
    if len(receiver.urls) == 1:
        return [(receiver.name, receiver.urls[0])]
    return [(f"{receiver.name}#{i}", url) for i, url in enumerate(receiver.urls)]


class Routing:
    """Which receivers an incident goes to, and whether it is muted now.

    Receivers are named as in the config, except that an Alertmanager receiver
    with several URLs is one target per URL (see ``targets``), so one that is down
    does not hold back the others."""

    def __init__(self, config: AlertingConfig, families: Mapping[str, str]) -> None:
        self.config = config
        self.families = families
        self.targets = {r.name: [t for t, _ in targets(r)] for r in config.receivers}
        self.pushers = {
            t for r in config.receivers if isinstance(r, Alertmanager) for t in self.targets[r.name]
        }

    def labels(self, alert: Mapping[str, Any], severity: str) -> dict[str, str]:
        return {
            "severity": severity,
            "metric": alert["metric"],
            "family": self.families.get(alert["metric"], "custom"),
            **alert["slice"],
        }

    def receivers_for(self, labels: Sequence[Mapping[str, str]]) -> list[str]:
        """The targets of every route that matches any of the labels."""
        out: list[str] = []
        for route in self.config.routes:
            if any(_matches(route.match, one) for one in labels):
                for name in route.receivers:
                    out.extend(t for t in self.targets[name] if t not in out)
        return out

    def groups_itself(self, target: str) -> bool:
        return target in self.pushers

    def muted(self, labels: Mapping[str, str], now: datetime) -> bool:
        return any(w.active(now) and _matches(w.match, labels) for w in self.config.mute_windows)
