"""The daily digest: what happened in the last day, for the people who run operations.

The last ``hours``' incidents with their time to acknowledge and to resolve,
the KPIs that moved most against their baseline, the precision that
people's labels give, and what the calendar entries that ended did against the
ordinary baseline. Printed as Markdown by ``opswatch digest``, and posted
to Slack through the outbox, by the command or every day at the configured
time (once per day, however many replicas run).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.alerting.book import AlertBook
from services.alerting.lifecycle import SEVERITY_RANK, iso, parse_time
from services.alerting.messages import calendar_entry, num, where
from services.alerting.metrics import precision
from services.alerting.routing import DigestConfig
from services.alerting.store import AlertFilter, AlertStore
from services.detector.engine.slices import parse_slice_key

MOVERS = 5
CHARTS = 3  # incidents whose charts the digest shows
RULE = "| --- | --- | --- | --- | --- |"


@dataclass(frozen=True)
class Mover:
    metric: str
    slice: Mapping[str, str]
    observed: float
    expected: float
    change: float  # relative to expected
    calendar: str | None = None  # the calendar entry its window was inside, if any


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    incidents: Sequence[Mapping[str, Any]]
    time_to_acknowledge_s: Sequence[float]
    time_to_resolve_s: Sequence[float]
    movers: Sequence[Mover]
    labels: Mapping[str, int] = field(default_factory=dict)
    # calendar entries that ended within the digest's span: per family head and metric,
    # what was observed against the ordinary baseline
    effects: Sequence[Mapping[str, Any]] = ()

    @property
    def precision(self) -> float | None:
        return precision(self.labels)


def _seconds(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


def build(
    store: AlertStore,
    now: datetime,
    hours: float = 24.0,
    effects: Sequence[Mapping[str, Any]] = (),
) -> Digest:
    """The digest of the ``hours`` before ``now``; ``effects``: the observed effects of
    calendar entries (those that ended within the span are shown)."""
    since = now - timedelta(hours=hours)
    incidents = store.incidents_between(iso(since), iso(now))
    to_ack = [_seconds(i["opened_at"], i["acknowledged_at"]) for i in incidents]
    to_resolve = [_seconds(i["opened_at"], i["resolved_at"]) for i in incidents]
    alerts = store.alerts_between(AlertFilter(since=iso(since), until=iso(now)))
    strongest: dict[tuple[str, str], Mover] = {}
    labels: dict[str, int] = {}
    for alert in alerts:
        if alert.get("label"):
            labels[alert["label"]] = labels.get(alert["label"], 0) + 1
        change = (alert["observed"] - alert["expected"]) / max(abs(alert["expected"]), 1e-9)
        key = (alert["metric"], ",".join(f"{k}={v}" for k, v in alert["slice"].items()))
        if key not in strongest or abs(change) > abs(strongest[key].change):
            strongest[key] = Mover(
                alert["metric"],
                alert["slice"],
                alert["observed"],
                alert["expected"],
                change,
                calendar_entry(alert.get("calendar")),
            )
    movers = sorted(strongest.values(), key=lambda m: -abs(m.change))[:MOVERS]
    return Digest(
        since,
        now,
        incidents,
        [s for s in to_ack if s is not None],
        [s for s in to_resolve if s is not None],
        movers,
        labels,
        [e for e in effects if since.timestamp() < e["end"] <= now.timestamp()],
    )


def _duration(values: Sequence[float]) -> str:
    if not values:
        return "-"
    minutes = statistics.median(values) / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def markdown(d: Digest) -> str:
    lines = [
        f"# opswatch daily digest, {d.since:%Y-%m-%d %H:%M} to {d.until:%Y-%m-%d %H:%M} UTC",
        "",
        f"- Incidents: **{len(d.incidents)}** "
        f"({sum(1 for i in d.incidents if i['status'] != 'resolved')} still open)",
        f"- Median time to acknowledge: **{_duration(d.time_to_acknowledge_s)}** "
        f"({len(d.time_to_acknowledge_s)} acknowledged)",
        f"- Median time to resolve: **{_duration(d.time_to_resolve_s)}** "
        f"({len(d.time_to_resolve_s)} resolved)",
    ]
    judged = sum(d.labels.values())
    value = d.precision
    lines.append(
        f"- Precision from labels: **{value:.0%}** of {judged} labelled alerts"
        if value is not None
        else "- Precision from labels: no alert labelled yet"
    )
    lines += ["", "## Incidents", ""]
    if d.incidents:
        lines += [
            "| opened | severity | status | what | alerts |",
            "| --- | --- | --- | --- | --- |",
        ]
        for i in d.incidents:
            lines.append(
                f"| {i['opened_at']} | {i['severity']} | {i['status']} | {i['title']} "
                f"| {i['alerts']} |"
            )
    else:
        lines.append("None.")
    lines += ["", "## KPIs that moved most against their baseline", ""]
    if d.movers:
        lines += [
            "| metric | slice | observed | expected | change | calendar |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for m in d.movers:
            entry = m.calendar or "-"
            lines.append(
                f"| {m.metric} | {where(m.slice)} | {m.observed:.4g} | {m.expected:.4g} "
                f"| {m.change:+.0%} | {entry} |"
            )
    else:
        lines.append("None moved out of its band.")
    if d.effects:
        lines += ["", "## Calendar entries that ended: observed effect", ""]
        lines += [
            "| entry | effect | slice | metric | observed / ordinary | set |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for e in d.effects:
            seen = e["observed"] / e["ordinary"] if e["ordinary"] else None
            lines.append(
                f"| {e['name']} | {e['effect']} | {where(parse_slice_key(e['slice']))} "
                f"| {e['metric']} | {num(seen)} | {num(e.get('factor_set'))} |"
            )
    return "\n".join(lines) + "\n"


def charts(d: Digest, most: int = CHARTS) -> list[dict[str, str]]:
    """The day's main incidents, whose charts the digest shows: the most severe first,
    then those with the most alerts, then the earliest."""
    ranked = sorted(
        d.incidents, key=lambda i: (-SEVERITY_RANK[i["severity"]], -i["alerts"], i["opened_at"])
    )
    return [{"incident_id": i["id"], "title": i["title"]} for i in ranked[:most]]


def post(book: AlertBook, day: str, receivers: Sequence[str], d: Digest) -> int:
    """Accept the digest into the outbox for its receivers, with its charts."""
    return book.enqueue_digest(day, receivers, markdown(d), charts(d))


def due_today(now: datetime, at: str, timezone: str) -> str | None:
    """The local date whose digest is due at ``now`` (``at`` is HH:MM), or None before it."""
    local = now.astimezone(ZoneInfo(timezone))
    hour, minute = (int(p) for p in at.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return None
    return local.date().isoformat()


def scheduler(
    book: AlertBook,
    config: DigestConfig,
    effects: Callable[[], Sequence[Mapping[str, Any]]] = tuple,
) -> Callable[[], int]:
    """A round for the dispatcher: once the day's time has come, accept its digest
    (with the observed effects ``effects`` gives of calendar entries that ended)."""
    done: set[str] = set()

    def run() -> int:
        now = book.clock()
        day = due_today(now, config.at, config.timezone)
        if day is None or day in done:
            return 0
        done.add(day)
        return post(book, day, config.receivers, build(book.store, now, effects=effects()))

    return run
