"""What was learned last time, and the review after an incident.

``similar`` ranks resolved incidents of the same metric family on related slices
(no dimension set to different values) by how many dimension values they share
with the incident, then by recency; ``markdown`` writes the post-incident review:
summary, timeline, impact, chart, notes and labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from services.alerting.charts import Member
from services.alerting.incidents import related
from services.alerting.lifecycle import parse_time
from services.alerting.messages import duration, num, where
from services.alerting.pages import local, timeline
from services.alerting.store import AlertStore

SIMILAR = 3


def overlap(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    return sum(1 for d, v in a.items() if b.get(d) == v)


def similar(
    incident: Mapping[str, Any], past: Sequence[Mapping[str, Any]], limit: int = SIMILAR
) -> list[dict[str, Any]]:
    """Up to ``limit`` of ``past`` (resolved incidents of the family, each with
    ``notes`` and ``labels``) on slices related to the incident's, the most shared
    dimension values first, then the most recently opened."""
    here = incident["slice"]
    found = [
        p
        for p in past
        if p["id"] != incident["id"]
        and p["status"] == "resolved"
        and p["family"] == incident["family"]
        and related(here, p["slice"])
        and related(p["slice"], here)
    ]
    found.sort(key=lambda p: (overlap(here, p["slice"]), p["opened_at"]), reverse=True)
    return [
        {
            "id": p["id"],
            "title": p["title"],
            "slice": p["slice"],
            "opened_at": p["opened_at"],
            "resolved_at": p["resolved_at"],
            "resolve_s": _seconds(p["started_at"], p["resolved_at"]),
            "label": _label(p["labels"]),
            "notes": p["notes"],
        }
        for p in found[:limit]
    ]


def _seconds(start: str, end: str | None) -> int | None:
    if end is None:
        return None
    return int((parse_time(end) - parse_time(start)).total_seconds())


def _label(labels: Sequence[str]) -> str | None:
    """The incident's label: its alerts' most common one."""
    return max(sorted(set(labels)), key=labels.count) if labels else None


def impact(points: Sequence[Sequence[Any]]) -> dict[str, float] | None:
    """Observed and expected summed over the anomalous windows of a series, and the
    difference: for a count or a sum, what was lost (negative) or gained."""
    windows = [p for p in points if len(p) > 5 and p[5] and p[1] is not None and p[2] is not None]
    if not windows:
        return None
    observed = sum(float(p[1]) for p in windows)
    expected = sum(float(p[2]) for p in windows)
    return {
        "windows": len(windows),
        "observed": observed,
        "expected": expected,
        "difference": observed - expected,
    }


def markdown(
    incident: Mapping[str, Any],
    members: Sequence[Member],
    notifications: Sequence[Mapping[str, Any]],
    past: Sequence[Mapping[str, Any]],
    timezone: str,
    chart_url: str,
) -> str:
    """The post-incident review in Markdown."""
    alerts = [a for a, _ in members]
    lead = next(
        (
            (a, s)
            for a, s in members
            if a["metric"] == incident["metric"] and a["slice"] == incident["slice"]
        ),
        members[0],
    )
    took = _seconds(incident["started_at"], incident["resolved_at"])
    labels = [a["label"] for a in alerts if a.get("label")]
    lines = [
        f"# Review: {incident['title']}",
        "",
        "## Summary",
        "",
        f"- Status: {incident['status']}, severity {incident['severity']}, "
        f"family {incident['family']}",
        f"- Started {local(incident['started_at'], timezone)}, resolved "
        f"{local(incident['resolved_at'], timezone)} ({duration(took)})",
        f"- Acknowledged {local(incident['acknowledged_at'], timezone)}",
        f"- Alerts: {len(alerts)} ("
        + "; ".join(f"{a['metric']} in {where(a['slice'])}" for a in alerts)
        + ")",
        f"- Label: {_label(labels) or 'none'}",
        "",
        "## Timeline",
        "",
    ]
    for e in timeline(alerts, notifications, incident.get("notes", [])):
        lines.append(f"- {local(e.at.isoformat(), timezone)}: {e.text}")
    lines += ["", "## Impact", ""]
    found = impact(lead[1])
    metric = lead[0]["metric"]
    if found is None:
        lines.append("No anomalous window is recorded in the alert's series.")
    else:
        lines.append(
            f"Over {found['windows']} anomalous window(s) of {metric} in "
            f"{where(lead[0]['slice'])}: observed {num(found['observed'])} against "
            f"{num(found['expected'])} expected, a difference of {num(found['difference'])} "
            "(for a count or a sum, the units lost or gained; for a rate, the sum of the "
            "windows' rates)."
        )
    lines += ["", "## Chart", "", f"![{metric}]({chart_url})", "", "## Notes", ""]
    notes = incident.get("notes", [])
    lines += [f"- **{n['kind']}** ({n['author']}): {n['text']}" for n in notes] or ["None."]
    lines += ["", "## Similar past incidents", ""]
    for s in similar(incident, past):
        lines.append(
            f"- {s['title']} (opened {local(s['opened_at'], timezone)}, resolved in "
            f"{duration(s['resolve_s'])}, label {s['label'] or 'none'})"
        )
        lines += [f"  - **{n['kind']}**: {n['text']}" for n in s["notes"]]
    if lines[-1] == "":
        lines.append("None.")
    return "\n".join(lines) + "\n"


def similar_to(
    store: AlertStore, incident: Mapping[str, Any], conn: Connection | None = None
) -> list[dict[str, Any]]:
    """The stored incidents like this one (in ``conn``'s transaction when given)."""
    return similar(incident, store.resolved_of_family(incident["family"], conn=conn))


def review(store: AlertStore, incident_id: str, timezone: str, chart_url: str) -> str | None:
    """The review of a stored incident; None when there is no such incident."""
    incident = store.get_incident(incident_id)
    if incident is None:
        return None
    return markdown(
        incident,
        store.members(incident),
        store.notifications(incident_id),
        store.resolved_of_family(incident["family"]),
        timezone,
        chart_url,
    )
