"""What each receiver is sent for an incident notice. Pure: notice in, payload out.

A notice is what the outbox keeps: the kind (trigger, update, acknowledge,
repeat, resolve, push), the incident and its alerts as the API shows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from services.alerting.links import PublicLinks
from services.common.contracts import slice_label

COLOURS = {"critical": "#E01E5A", "warning": "#ECB22E", "info": "#36C5F0", "resolved": "#2EB67D"}
PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_MENTION = re.compile(r"@(?=\w)")


@dataclass(frozen=True)
class Links:
    public_url: str
    grafana_url: str | None = None
    runbook_url: str | None = None
    public: PublicLinks | None = None  # OPSWATCH_PUBLIC_URL: signed links and charts

    def alert(self, alert_id: str) -> str:
        return f"{self.public_url.rstrip('/')}/v1/alerts/{alert_id}"

    def incident(self, incident_id: str) -> str:
        """The incident's page, for people."""
        if self.public is not None:
            return self.public.incident_page(incident_id)
        return f"{self.public_url.rstrip('/')}/incidents/{incident_id}"

    def chart(self, incident_id: str) -> str | None:
        """The incident's chart as Slack fetches it, without the read token."""
        return self.public.incident_chart(incident_id) if self.public is not None else None

    def dashboard(self, alert: Mapping[str, Any]) -> str | None:
        if not self.grafana_url:
            return None
        # the operations overview's variables: the KPI series' own metric and slice labels
        query = {"var-metric": alert["metric"], "var-slice": slice_label(alert["slice"])}
        sep = "&" if "?" in self.grafana_url else "?"
        return f"{self.grafana_url}{sep}{urlencode(query)}"

    def runbook(self, metric: str) -> str | None:
        return self.runbook_url.format(metric=metric) if self.runbook_url else None


def escape(text: str) -> str:
    """Text from events and configuration, made inert for Slack: no markup, no
    links and no mentions (``<!channel>``, ``@channel``, ``<@U123>``)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@\u200b", text)


def where(slice_: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in slice_.items()) or "all-up"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "not resolved"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def calendar_entry(mark: Mapping[str, Any] | None) -> str | None:
    """``Winter sale (expect x2.6)``: the calendar entry an alert's window was inside."""
    if not mark:
        return None
    factor = mark.get("factor")
    if factor is not None:
        how = f"{mark['effect']} x{num(factor)}"
    elif mark["effect"] == "expect":
        how = "expect, this metric as usual"
    else:
        how = mark["effect"]
    return f"{mark['name']} ({how})"


def calendar_note(mark: Mapping[str, Any] | None) -> str | None:
    """``Calendar: Winter sale (expect x2.6)`` for an alert inside a calendar entry."""
    entry = calendar_entry(mark)
    return entry and f"Calendar: {entry}"


def notes_summary(notes: Sequence[Mapping[str, Any]], most: int = 200) -> str:
    """What an incident's notes say, the causes first, then actions and lessons."""
    order = {"cause": 0, "action": 1, "lesson": 2}
    ranked = sorted(notes, key=lambda n: order.get(n["kind"], 3))
    text = "; ".join(f"{n['kind']}: {n['text']}" for n in ranked)
    return text if len(text) <= most else text[: most - 3] + "..."


def headline(notice: Mapping[str, Any]) -> str:
    incident = notice["incident"]
    lead = notice["alerts"][0]
    state = {
        "resolved": "RESOLVED",
        "acknowledged": "ACKNOWLEDGED",
    }.get(incident["status"], incident["severity"].upper())
    return (
        f"[{state}] {lead['metric']} {'dropped' if lead['direction'] == 'down' else 'rose'} "
        f"in {where(lead['slice'])}: observed {num(lead['observed'])}, expected "
        f"{num(lead['expected'])} ({num(lead['expected_low'])}-{num(lead['expected_high'])})"
    )


NOTE_KINDS = ("cause", "action", "lesson")


def slack_message(notice: Mapping[str, Any], links: Links, notes: bool = False) -> dict[str, Any]:
    """Block Kit in a coloured attachment, with a plain-text fallback; ``notes``: with
    an Add note button (a bot's message, whose token can open the note's modal)."""
    incident = notice["incident"]
    alerts: Sequence[Mapping[str, Any]] = notice["alerts"]
    lead = alerts[0]
    colour = COLOURS["resolved" if incident["status"] == "resolved" else incident["severity"]]
    fields = [
        ("Metric", escape(lead["metric"])),
        ("Slice", escape(where(lead["slice"]))),
        ("Observed", f"{num(lead['observed'])} (n={num(lead.get('n'))})"),
        (
            "Expected",
            f"{num(lead['expected'])} [{num(lead['expected_low'])}, {num(lead['expected_high'])}]",
        ),
        ("Since", lead["started_at"]),
        ("Status", incident["status"] + (" (snoozed)" if incident.get("snoozed") else "")),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{escape(headline(notice))}*"},
        },
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields],
        },
    ]
    note = calendar_note(lead.get("calendar"))
    if note is not None:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(note)}]})
    drivers = lead.get("drivers") or []
    if drivers:
        text = "; ".join(
            f"{escape(where(d['slice']))} {num(d.get('observed'))} vs {num(d.get('expected'))}"
            for d in drivers[:5]
        )
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Drivers: {text}"}]}
        )
    if len(alerts) > 1:
        more = "; ".join(
            f"{escape(a['metric'])} in {escape(where(a['slice']))} ({a['status']})"
            for a in alerts[1:6]
        )
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Also in this incident: {more}"}],
            }
        )
    like: Sequence[Mapping[str, Any]] = notice.get("similar") or []
    if like:
        lines = "\n".join(_similar(s, links) for s in like[:3])
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Similar past incidents*\n{lines}"},
            }
        )
    if notice.get("flapping") or incident.get("flapping"):
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Flapping: further flips are not notified"}
                ],
            }
        )
    link_items = [("Incident", links.incident(incident["id"])), ("Alert", links.alert(lead["id"]))]
    dashboard = links.dashboard(lead)
    if dashboard:
        link_items.append(("Dashboard", dashboard))
    runbook = links.runbook(lead["metric"])
    if runbook:
        link_items.append(("Runbook", runbook))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": " | ".join(f"<{u}|{n}>" for n, u in link_items)}
            ],
        }
    )
    chart = links.chart(incident["id"])
    if chart is not None:
        blocks.append(_image(chart, f"{lead['metric']} in {where(lead['slice'])}"))
    if incident["status"] != "resolved":
        blocks.append(
            {
                "type": "actions",
                "block_id": "opswatch_actions",
                "elements": [
                    _button("acknowledge", "Acknowledge", incident["id"], "primary"),
                    _button("snooze", "Snooze 1h", incident["id"], None),
                    _button("false_alarm", "False alarm", incident["id"], "danger"),
                    *([_button("add_note", "Add note", incident["id"], None)] if notes else []),
                ],
            }
        )
    return {"text": escape(headline(notice)), "attachments": [{"color": colour, "blocks": blocks}]}


def _similar(past: Mapping[str, Any], links: Links) -> str:
    line = (
        f"\u2022 <{links.incident(past['id'])}|{escape(past['title'])}>: resolved in "
        f"{duration(past['resolve_s'])}, label {past['label'] or 'none'}"
    )
    notes = past.get("notes") or []
    return line + (f". {escape(notes_summary(notes))}" if notes else ". No notes.")


def _image(url: str, what: str) -> dict[str, Any]:
    return {
        "type": "image",
        "image_url": url,
        "alt_text": f"{what}: observed against expected and its band"[:2000],
        "title": {"type": "plain_text", "text": what[:2000]},
    }


def _button(action: str, text: str, value: str, style: str | None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }
    if style:
        button["style"] = style
    return button


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def note_modal(incident: Mapping[str, Any]) -> dict[str, Any]:
    """The modal of the Add note button: the kind and the text of a note."""
    options = [{"text": _plain(k), "value": k} for k in NOTE_KINDS]
    return {
        "type": "modal",
        "callback_id": "add_note",
        "private_metadata": incident["id"],
        "title": _plain("Add a note"),
        "submit": _plain("Add"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": escape(incident["title"])}],
            },
            {
                "type": "input",
                "block_id": "kind",
                "label": _plain("Kind"),
                "element": {
                    "type": "static_select",
                    "action_id": "kind",
                    "initial_option": options[0],
                    "options": options,
                },
            },
            {
                "type": "input",
                "block_id": "text",
                "label": _plain("Note"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "text",
                    "multiline": True,
                    "max_length": 4000,
                },
            },
        ],
    }


def note_reply(note: Mapping[str, Any]) -> str:
    """A note as the incident's thread shows it."""
    return f"Note ({note['kind']}) by {escape(note['author'])}: {escape(note['text'])}"


def slack_reply(notice: Mapping[str, Any]) -> str:
    incident = notice["incident"]
    if notice["kind"] == "resolve":
        return f"Resolved at {incident.get('resolved_at') or notice['accepted_at']}."
    return f"Acknowledged at {incident.get('acknowledged_at') or notice['accepted_at']}."


def alertmanager_alerts(notice: Mapping[str, Any], links: Links) -> list[dict[str, Any]]:
    """Labels identify (metric, slice, severity), annotations inform."""
    out = []
    for alert in notice["alerts"]:
        labels = {
            "alertname": "OpswatchAnomaly",
            "metric": alert["metric"],
            "severity": alert["peak_severity"],
            **alert["slice"],
        }
        annotations = {
            "summary": f"{alert['metric']} {alert['direction']} in {where(alert['slice'])}",
            "description": (
                f"observed {num(alert['observed'])}, expected {num(alert['expected'])} "
                f"[{num(alert['expected_low'])}, {num(alert['expected_high'])}], "
                f"n={num(alert.get('n'))}, score {alert['score']:.2f}"
            ),
            "incident_id": notice["incident"]["id"],
            "alert_id": alert["id"],
        }
        dashboard = links.dashboard(alert)
        if dashboard:
            annotations["dashboard"] = dashboard
        runbook = links.runbook(alert["metric"])
        if runbook:
            annotations["runbook_url"] = runbook
        body: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations,
            "startsAt": alert["started_at"],
            "generatorURL": links.alert(alert["id"]),
        }
        if alert.get("snoozed_until") or alert.get("snoozed_until_resolved"):
            annotations["snoozed"] = alert.get("snoozed_until") or "until resolved"
        if alert["status"] == "resolved" and not notice["incident"].get("flapping"):
            body["endsAt"] = alert["resolved_at"]
        out.append(body)
    return out


def pagerduty_event(notice: Mapping[str, Any], routing_key: str, links: Links) -> dict[str, Any]:
    incident = notice["incident"]
    action = {"acknowledge": "acknowledge", "resolve": "resolve"}.get(notice["kind"], "trigger")
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": incident["id"],
    }
    if action == "trigger":
        lead = notice["alerts"][0]
        event["payload"] = {
            "summary": headline(notice)[:1024],
            "source": "opswatch",
            "severity": PAGERDUTY_SEVERITY[incident["severity"]],
            "timestamp": lead["started_at"],
            "component": lead["metric"],
            "group": incident["family"],
            "class": lead["direction"],
            "custom_details": {
                "slice": lead["slice"],
                "observed": lead["observed"],
                "expected": lead["expected"],
                "expected_low": lead["expected_low"],
                "expected_high": lead["expected_high"],
                "alerts": [a["id"] for a in notice["alerts"]],
            },
        }
        event["links"] = [{"href": links.incident(incident["id"]), "text": "opswatch incident"}]
    return event


def slack_digest(notice: Mapping[str, Any], links: Links) -> dict[str, Any]:
    """The digest's Markdown as a preformatted block (its tables stay aligned), then
    the charts of the day's main incidents when links can show them."""
    text = notice["markdown"]
    first = text.splitlines()[0].lstrip("# ")
    body = text if len(text) <= 2900 else text[:2880] + "\n[...]"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": first[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{escape(body)}```"}},
    ]
    for shown in notice.get("charts", []):
        chart = links.chart(shown["incident_id"])
        if chart is not None:
            blocks.append(_image(chart, shown["title"]))
    return {"text": escape(first), "blocks": blocks}
