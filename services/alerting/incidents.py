"""Incidents: alerts that share a cause, notified as one. Pure; the clock passed in.

An alert joins an open incident of its metric family when its slice is related
to a member's (no dimension fixed to different values: all-up is related to
every slice, ``region=eu`` to ``region=eu,channel=web`` and to ``channel=web``,
not to ``region=us``) and it starts within ``join_window`` of the incident's
last anomalous window. So an all-up alert and the slices that drive it are one
incident, and page once.

Notifications follow Alertmanager's timers: the first after ``group_wait``
(alerts arriving meanwhile go into it), changes at most every
``group_interval``, a reminder every ``repeat_interval`` while firing and not
acknowledged. An incident whose open alerts are all snoozed is not notified
until the snooze ends, but its resolve is; a flapping incident is not notified
on each flip, only once it settles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

from services.alerting.lifecycle import SEVERITY_RANK, AlertState, Policy, Status, parse_time

Kind = Literal["trigger", "update", "acknowledge", "repeat", "resolve", "push"]


@dataclass(frozen=True)
class NotifyPolicy:
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    join_window: timedelta = timedelta(minutes=30)
    push_interval: timedelta = timedelta(minutes=1)


def related(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    return all(b[d] == v for d, v in a.items() if d in b)


def incident_id(first_alert_id: str) -> str:
    return hashlib.blake2b(f"incident|{first_alert_id}".encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class IncidentState:
    id: str
    family: str
    opened_at: datetime
    last_event: datetime
    members: tuple[str, ...]
    slices: tuple[Mapping[str, str], ...]
    changed_at: datetime | None = None  # wall clock of the last change of a member
    version: int = 1
    notified_version: int = 0
    told: tuple[str, ...] = ()  # receivers sent a message about it
    pushed_to: tuple[str, ...] = ()  # receivers that group by themselves, pushed its alerts
    notified_status: Status | None = None
    last_notified_at: datetime | None = None
    pushed_status: Status | None = None
    last_pushed_at: datetime | None = None


@dataclass(frozen=True)
class Summary:
    """An incident as its members make it now."""

    status: Status
    severity: str
    lead: AlertState
    snoozed: bool
    flapping: bool
    alerts: Sequence[AlertState] = field(default_factory=tuple)


def summarize(
    alerts: Sequence[AlertState],
    now: datetime,
    policy: Policy,
    changed_at: datetime | None = None,
) -> Summary:
    """Firing if any member fires, acknowledged if every open member is, else resolved;
    the lead is the most severe open member, the shallowest slice first.

    Flapping is judged on event time, at the latest anomalous window of any member
    (so a replay flaps as production did), and is over once the incident has not
    changed for a flap window of wall-clock time (so its last state is told)."""
    open_ = [a for a in alerts if a.status != "resolved"]
    pool = open_ or list(alerts)
    lead = max(
        pool,
        key=lambda a: (
            SEVERITY_RANK[a.peak_severity],
            -len(a.latest["slice"]),
            a.peak_score,
            -a.started_at.timestamp(),
        ),
    )
    latest = max(a.last_seen for a in alerts)
    if not open_:
        status: Status = "resolved"
    elif any(a.status == "firing" for a in open_):
        status = "firing"
    else:
        status = "acknowledged"
    return Summary(
        status=status,
        severity=max((a.peak_severity for a in pool), key=SEVERITY_RANK.__getitem__),
        lead=lead,
        snoozed=bool(open_) and all(a.snoozed(now) for a in open_),
        flapping=any(a.flapping_at(latest, policy) for a in alerts)
        and (changed_at is None or now - changed_at < policy.flap_window),
        alerts=tuple(alerts),
    )


def open_incident(alert: AlertState, family: str, now: datetime) -> IncidentState:
    return IncidentState(
        id=incident_id(alert.id),
        family=family,
        opened_at=now,
        changed_at=now,
        last_event=alert.last_seen,
        members=(alert.id,),
        slices=(dict(alert.latest["slice"]),),
    )


def accepts(incident: IncidentState, family: str, alert: AlertState, policy: NotifyPolicy) -> bool:
    return (
        incident.family == family
        and parse_time(alert.latest["window_start"]) - incident.last_event <= policy.join_window
        and any(related(s, alert.latest["slice"]) for s in incident.slices)
    )


def join(incident: IncidentState, alert: AlertState) -> IncidentState:
    return replace(
        incident,
        members=(*incident.members, alert.id),
        slices=(*incident.slices, dict(alert.latest["slice"])),
        last_event=max(incident.last_event, alert.last_seen),
        version=incident.version + 1,
    )


def touch(incident: IncidentState, alert: AlertState, material: bool = False) -> IncidentState:
    """A member moved; a material move (status, severity) is worth an update notice."""
    return replace(
        incident,
        last_event=max(incident.last_event, alert.last_seen),
        version=incident.version + (1 if material else 0),
    )


def due(
    incident: IncidentState,
    summary: Summary,
    now: datetime,
    policy: NotifyPolicy,
    muted: bool,
) -> Kind | None:
    """The notification an incident needs now, if any (the "needs update?" function)."""
    if muted:
        return None
    told = incident.notified_status
    if summary.status == "resolved":
        if told in ("firing", "acknowledged") and not summary.flapping:
            return "resolve"
        return None
    if summary.snoozed:
        return None
    if told in (None, "resolved"):
        if summary.flapping and told == "resolved":
            return None
        return "trigger" if now - incident.opened_at >= policy.group_wait else None
    assert incident.last_notified_at is not None
    since = now - incident.last_notified_at
    if summary.status == "acknowledged" and told == "firing":
        return "acknowledge"
    if incident.version > incident.notified_version and since >= policy.group_interval:
        return "update"
    if summary.status == "firing" and since >= policy.repeat_interval:
        return "repeat"
    return None


def notified(
    incident: IncidentState, summary: Summary, now: datetime, receivers: Sequence[str]
) -> IncidentState:
    return replace(
        incident,
        notified_version=incident.version,
        notified_status=summary.status,
        last_notified_at=now,
        told=tuple(dict.fromkeys((*incident.told, *receivers))),
    )


def push_due(
    incident: IncidentState,
    summary: Summary,
    now: datetime,
    policy: NotifyPolicy,
    muted: bool,
) -> Kind | None:
    """Receivers that group by themselves (Alertmanager) get every alert at once,
    again every ``push_interval`` while it fires (so it does not time out there),
    and once more when it is over. A flapping incident is pushed as firing until it
    settles; a snoozed one is still pushed (silences are Alertmanager's own)."""
    if muted:
        return None
    if summary.status == "resolved" and not summary.flapping:
        return "push" if incident.pushed_status not in (None, "resolved") else None
    if incident.last_pushed_at is None or now - incident.last_pushed_at >= policy.push_interval:
        return "push"
    return None


def pushed(
    incident: IncidentState, summary: Summary, now: datetime, receivers: Sequence[str]
) -> IncidentState:
    status: Status = "firing" if summary.flapping else summary.status
    return replace(
        incident,
        pushed_status=status,
        last_pushed_at=now,
        pushed_to=tuple(dict.fromkeys((*incident.pushed_to, *receivers))),
    )


_CODEC: TypeAdapter[IncidentState] = TypeAdapter(IncidentState)


def dump(state: IncidentState) -> dict[str, Any]:
    return _CODEC.dump_python(state, mode="json")  # type: ignore[no-any-return]


def load(data: Mapping[str, Any]) -> IncidentState:
    return _CODEC.validate_python(data)
