"""Sending what the outbox accepted: one sender per receiver, a dispatcher loop.

A sender answers Sent, Retry (after a delay: 429 with its Retry-After, 5xx and
network failures with exponential backoff) or Failed (any other 4xx: logged,
counted, not retried). Slack receivers are paced to about one message per
second each. A row stays in the outbox until it is sent or has failed, so a
notification accepted before a crash is sent after the restart; rows are
leased, so several replicas share the outbox without sending a row twice. A
sender killed while a request is out loses its lease, and another replica
sends that row again: webhooks carry the row's Idempotency-Key (the same on
every attempt) so that a receiver keeps one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.error import URLError

import httpx
import orjson
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from services.alerting import messages
from services.alerting.book import AlertBook
from services.alerting.lifecycle import parse_time
from services.alerting.links import PublicLinks
from services.alerting.metrics import Metrics
from services.alerting.routing import (
    AlertingConfig,
    Alertmanager,
    PagerDuty,
    ReceiverConfig,
    SlackBot,
    SlackWebhook,
    Webhook,
    targets,
)
from services.alerting.store import AlertStore, OutboxRow
from services.common.threads import Background

log = logging.getLogger(__name__)

# Loggers that write request URLs (webhook URLs are secrets) and bodies below WARNING
SECRET_LOGGERS = ("slack_sdk", "httpx", "httpcore")

MAX_ATTEMPTS = 12
SLACK_PACE_S = 1.0
TIMEOUT_S = 10.0
LEASE_S = 30.0  # longer than any one send (a timeout is 10 s); a crashed sender's rows wait this


@dataclass(frozen=True)
class Sent:
    ref: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Retry:
    detail: str
    after_s: float | None = None


@dataclass(frozen=True)
class Failed:
    detail: str


Result = Sent | Retry | Failed


def by_status(status: int, detail: str, retry_after: str | None) -> Result:
    if 200 <= status < 300:
        return Sent()
    if status == 429:
        return Retry(f"429 {detail}", _seconds(retry_after))
    if status >= 500:
        return Retry(f"{status} {detail}")
    return Failed(f"{status} {detail}")


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class Sender(Protocol):
    paced: bool

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result: ...


def _slack_body(row: OutboxRow, links: messages.Links, notes: bool = False) -> dict[str, Any]:
    if row.kind == "digest":
        return messages.slack_digest(row.payload, links)
    return messages.slack_message(row.payload, links, notes)


class SlackWebhookSender:
    paced = True

    def __init__(self, config: SlackWebhook, links: messages.Links) -> None:
        self.client = WebhookClient(
            config.url.resolve(f"receiver {config.name}").get_secret_value(),
            timeout=int(TIMEOUT_S),
            retry_handlers=[],
        )
        self.links = links

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result:
        try:
            resp = self.client.send_dict(_slack_body(row, self.links))
        except (URLError, TimeoutError, ConnectionError) as exc:
            return Retry(f"network: {type(exc).__name__}")
        return by_status(resp.status_code, str(resp.body)[:200], resp.headers.get("Retry-After"))


class SlackBotSender:
    """chat.postMessage for a new incident; chat.update for every change after, and
    a thread reply when it is acknowledged or resolved."""

    paced = True

    def __init__(self, config: SlackBot, links: messages.Links) -> None:
        self.client = WebClient(
            token=config.token.resolve(f"receiver {config.name}").get_secret_value(),
            base_url=config.api_url,
            timeout=int(TIMEOUT_S),
            retry_handlers=[],
        )
        self.channel = config.channel
        self.links = links

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result:
        message = _slack_body(row, self.links, notes=True)
        try:
            if row.kind == "digest":
                self.client.chat_postMessage(channel=self.channel, **message)
                return Sent()
            if ref is None:
                resp = self.client.chat_postMessage(channel=self.channel, **message)
                ref = {"channel": resp["channel"], "ts": resp["ts"]}
            else:
                self.client.chat_update(channel=ref["channel"], ts=ref["ts"], **message)
            if row.kind in ("acknowledge", "resolve", "repeat"):
                # an edit notifies no one: reminders go to the channel from the thread
                self.client.chat_postMessage(
                    channel=ref["channel"],
                    thread_ts=ref["ts"],
                    text=messages.slack_reply(row.payload),
                    reply_broadcast=row.kind == "repeat",
                )
        except SlackApiError as exc:
            resp = exc.response
            result = by_status(
                resp.status_code if resp.status_code != 200 else 400,
                str(resp.get("error")),
                resp.headers.get("Retry-After"),
            )
            # a message posted before the failure is kept, so a retry updates it
            return result if ref is None else _keeping(result, ref)
        except (URLError, TimeoutError, ConnectionError) as exc:
            return Retry(f"network: {type(exc).__name__}")
        return Sent(ref)

    def open_view(self, trigger_id: str, view: Mapping[str, Any]) -> None:
        """A modal for the person whose click gave ``trigger_id`` (SlackApiError on failure)."""
        self.client.views_open(trigger_id=trigger_id, view=dict(view))

    def reply(self, ref: Mapping[str, Any], text: str) -> None:
        """A reply in the thread of the message ``ref`` names."""
        self.client.chat_postMessage(channel=ref["channel"], thread_ts=ref["ts"], text=text)


@dataclass(frozen=True)
class RetryWithRef(Retry):
    ref: Mapping[str, Any] | None = None


def _keeping(result: Result, ref: Mapping[str, Any]) -> Result:
    if isinstance(result, Retry):
        return RetryWithRef(result.detail, result.after_s, ref)
    return result


class HttpSender:
    paced = False

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=TIMEOUT_S)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Result:
        try:
            resp = self.client.post(
                url, content=body, headers={"content-type": "application/json", **headers}
            )
        except httpx.TransportError as exc:
            return Retry(f"network: {type(exc).__name__}")
        return by_status(resp.status_code, resp.text[:200], resp.headers.get("retry-after"))


class AlertmanagerSender(HttpSender):
    """Every alert of the incident to one Alertmanager (API v2)."""

    def __init__(self, url: str, links: messages.Links) -> None:
        super().__init__()
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.links = links

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result:
        body = orjson.dumps(messages.alertmanager_alerts(row.payload, self.links))
        return self.post(self.url, body, {})


class PagerDutySender(HttpSender):
    def __init__(self, config: PagerDuty, links: messages.Links) -> None:
        super().__init__()
        self.url = config.url
        self.key = config.routing_key.resolve(f"receiver {config.name}")
        self.links = links

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result:
        event = messages.pagerduty_event(row.payload, self.key.get_secret_value(), self.links)
        return self.post(self.url, orjson.dumps(event), {})


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``{timestamp}.{body}`` with the shared secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSender(HttpSender):
    def __init__(self, config: Webhook, clock: Callable[[], datetime]) -> None:
        super().__init__()
        self.url = config.url.resolve(f"receiver {config.name}")
        self.secret = config.secret.resolve(f"receiver {config.name}")
        self.clock = clock

    def send(self, row: OutboxRow, ref: Mapping[str, Any] | None) -> Result:
        body = orjson.dumps(row.payload)
        stamp = str(int(self.clock().timestamp()))
        headers = {
            "Idempotency-Key": row.dedupe,
            "X-Opswatch-Timestamp": stamp,
            "X-Opswatch-Signature": webhook_signature(self.secret.get_secret_value(), stamp, body),
        }
        return self.post(self.url.get_secret_value(), body, headers)


def build_senders(
    config: AlertingConfig, clock: Callable[[], datetime], public: PublicLinks | None = None
) -> dict[str, Sender]:
    """The senders of every receiver; with ``public`` (OPSWATCH_PUBLIC_URL) links go
    there, signed, and Slack messages show charts."""
    for name in SECRET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    base = public.base if public is not None else config.public_url
    links = messages.Links(base, config.grafana_url, config.runbook_url, public)
    out: dict[str, Sender] = {}
    for receiver in config.receivers:
        if isinstance(receiver, Alertmanager):
            for target, url in targets(receiver):
                assert url is not None
                out[target] = AlertmanagerSender(url, links)
        else:
            out[receiver.name] = _sender(receiver, links, clock)
    return out


def _sender(
    receiver: ReceiverConfig, links: messages.Links, clock: Callable[[], datetime]
) -> Sender:
    if isinstance(receiver, SlackWebhook):
        return SlackWebhookSender(receiver, links)
    if isinstance(receiver, SlackBot):
        return SlackBotSender(receiver, links)
    if isinstance(receiver, PagerDuty):
        return PagerDutySender(receiver, links)
    assert isinstance(receiver, Webhook)
    return WebhookSender(receiver, clock)


class Dispatcher(Background):
    """Plans incident notifications into the outbox and sends what is due.

    It never sleeps on a receiver: a row that must wait (pacing, Retry-After)
    goes back to the outbox with its due time, and the round goes on."""

    def __init__(
        self,
        book: AlertBook,
        senders: Mapping[str, Sender],
        metrics: Metrics,
        interval_s: float = 1.0,
        rounds: Sequence[Callable[[], int]] = (),
    ) -> None:
        super().__init__("dispatcher", join_timeout_s=30.0)
        self.book = book
        self.rounds = rounds
        self.store: AlertStore = book.store
        self.senders = senders
        self.metrics = metrics
        self.interval_s = interval_s
        self.token = uuid.uuid4().hex
        self._next_slot: dict[str, datetime] = {}
        self._pruned: datetime | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:
                log.exception("notification round failed; trying again")
            self._stop.wait(self.interval_s)

    def step(self) -> int:
        """One round: scheduled work, plan, send every due row; how many were sent.
        Sending goes on when planning fails (what was accepted before is owed)."""
        try:
            for extra in self.rounds:
                extra()
            self.book.plan()
        except Exception:
            log.exception("planning notifications failed; sending what is due")
        now = self.book.clock()
        if self._pruned is None or now - self._pruned > timedelta(hours=1):
            self._pruned = now
            self.store.prune(now)
        return self.send_due()

    def send_due(self, kind: str | None = None, most: int = 500) -> int:
        """Send the due rows (of one kind only, if given); how many were sent."""
        sent = 0
        for _ in range(most):
            if self._stop.is_set():
                break
            row = self.store.claim(self.book.clock(), LEASE_S, self.token, kind)
            if row is None:
                break
            sent += self._deliver(row)
        self.metrics.outbox_depth.set(self.store.outbox_depth())
        return sent

    def _deliver(self, row: OutboxRow) -> int:
        now = self.book.clock()
        sender = self.senders.get(row.receiver)
        if sender is None:
            self._finish(row, "failed", "receiver no longer configured")
            return 0
        if sender.paced:
            slot = self._next_slot.get(row.receiver)
            if slot is not None and slot > now:
                self.store.postpone(row, slot)
                return 0
            self._next_slot[row.receiver] = now + timedelta(seconds=SLACK_PACE_S)
        ref = self.store.delivery(row.receiver, row.incident_id)
        try:
            result = sender.send(row, ref)
        except Exception as exc:  # a bug or a surprise: counted, retried, then given up
            log.exception("sending to %s raised", row.receiver)
            result = Retry(f"error: {type(exc).__name__}")
        now = self.book.clock()
        if isinstance(result, Sent):
            if result.ref is not None:
                self.store.remember_delivery(row.receiver, row.incident_id, result.ref)
            self._finish(row, "sent")
            self.metrics.latency.labels(row.receiver).observe(
                max(0.0, (now - parse_time(row.created_at)).total_seconds())
            )
            return 1
        if isinstance(result, RetryWithRef) and result.ref is not None:
            self.store.remember_delivery(row.receiver, row.incident_id, result.ref)
        if isinstance(result, Retry) and row.attempts + 1 < MAX_ATTEMPTS:
            delay = result.after_s if result.after_s is not None else min(2.0**row.attempts, 300)
            due = now + timedelta(seconds=delay)
            if result.after_s is not None:
                self._next_slot[row.receiver] = due
            if not self.store.retry_at(row, due, result.detail):
                log.warning("lease on a notification to %s lost while sending", row.receiver)
            self.metrics.notifications.labels(row.receiver, "retried").inc()
            log.warning(
                "notification to %s not sent (%s); retrying in %.1fs",
                row.receiver,
                result.detail,
                delay,
            )
            return 0
        self._finish(row, "failed", result.detail)
        log.warning("notification to %s failed for good: %s", row.receiver, result.detail)
        return 0

    def _finish(self, row: OutboxRow, outcome: str, detail: str | None = None) -> None:
        if not self.store.finish(row, outcome, detail):
            log.warning("lease on a notification to %s lost while sending", row.receiver)
        self.metrics.notifications.labels(row.receiver, outcome).inc()
