"""What the incident pages show, as plain data: an incident's timeline, and times
in the business timezone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.alerting.lifecycle import parse_time
from services.alerting.messages import where


@dataclass(frozen=True)
class Entry:
    at: datetime  # UTC
    kind: str  # anomaly, notified, acknowledged, snoozed, note, resolved
    text: str


def local(value: str | None, timezone: str) -> str:
    """An ISO time as the business reads it: ``2026-03-02 18:00 CET``."""
    if not value:
        return "-"
    return f"{parse_time(value).astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M %Z}"


def timeline(
    alerts: Sequence[Mapping[str, Any]],
    notifications: Sequence[Mapping[str, Any]],
    notes: Sequence[Mapping[str, Any]],
) -> list[Entry]:
    """Everything that happened to an incident, oldest first: each alert's first
    anomalous window, acknowledge, snooze and resolve, each notification and to
    whom, and each note."""
    entries: list[Entry] = []
    for a in alerts:
        what = f"{a['metric']} in {where(a['slice'])}"
        entries.append(
            Entry(parse_time(a["started_at"]), "anomaly", f"first anomalous window: {what}")
        )
        if a.get("acknowledged_at"):
            entries.append(
                Entry(parse_time(a["acknowledged_at"]), "acknowledged", f"acknowledged: {what}")
            )
        if a.get("snoozed_until"):
            entries.append(
                Entry(
                    parse_time(a["snoozed_until"]),
                    "snoozed",
                    f"snooze of {what} ends",
                )
            )
        if a.get("resolved_at"):
            entries.append(Entry(parse_time(a["resolved_at"]), "resolved", f"resolved: {what}"))
    for n in notifications:
        outcome = n["outcome"] or "pending"
        entries.append(
            Entry(
                parse_time(n["created_at"]),
                "notified",
                f"{n['kind']} notification to {n['receiver']} ({outcome})",
            )
        )
    for note in notes:
        entries.append(
            Entry(
                parse_time(note["created_at"]),
                "note",
                f"{note['kind']} by {note['author']}: {note['text']}",
            )
        )
    return sorted(entries, key=lambda e: e.at)
