"""The alert book: detector updates and people's actions in, stored alerts and
incidents and accepted notifications out, one transaction per change."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from services.alerting import incidents as inc
from services.alerting import lifecycle
from services.alerting.lifecycle import SEVERITY_RANK, AlertState, Change, Label, Policy, iso
from services.alerting.messages import where
from services.alerting.review import similar_to
from services.alerting.routing import Routing
from services.alerting.store import AlertStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class NotFoundError(LookupError):
    pass


def incident_body(state: inc.IncidentState, summary: inc.Summary, flapping: bool) -> dict[str, Any]:
    lead = summary.lead
    members = summary.alerts
    resolved = [a.resolved_at for a in members if a.resolved_at is not None]
    acked = [a.acknowledged_at for a in members if a.acknowledged_at is not None]
    return {
        "id": state.id,
        "family": state.family,
        "status": summary.status,
        "severity": summary.severity,
        "title": title(lead),
        "metric": lead.latest["metric"],
        "slice": dict(lead.latest["slice"]),
        "alert_ids": list(state.members),
        "alerts": len(members),
        "opened_at": iso(state.opened_at),
        "started_at": iso(min(a.started_at for a in members)),
        "updated_at": iso(max(a.updated_at for a in members)),
        "acknowledged_at": iso(min(acked)) if acked else None,
        "resolved_at": iso(max(resolved)) if summary.status == "resolved" and resolved else None,
        "snoozed": summary.snoozed,
        "flapping": flapping,
        "notified_status": state.notified_status,
    }


def title(alert: AlertState) -> str:
    a = alert.latest
    moved = "dropped" if a["direction"] == "down" else "rose"
    return f"{a['metric']} {moved} in {where(a['slice'])}"


class AlertBook:
    def __init__(
        self,
        store: AlertStore,
        families: Mapping[str, str],
        routing: Routing,
        clock: Clock,
        policy: Policy | None = None,
        notify: inc.NotifyPolicy | None = None,
    ) -> None:
        self.store = store
        self.families = families
        self.routing = routing
        self.clock = clock
        self.policy = policy or Policy()
        self.notify = notify or inc.NotifyPolicy()

    # detector updates

    def ingest(self, update: Mapping[str, Any]) -> Change:
        """Apply one detector update (already validated against the contract).

        A firing update's window, and a first update's recent windows (``series``),
        are added to the alert's series; the alert itself keeps neither."""
        update = dict(update)
        series = update.pop("series", None) or []
        with self.store.transaction() as conn:
            found = self.store.latest_for(conn, update["fingerprint"])
            before, incident_id = found if found else (None, None)
            state, change = lifecycle.observe(before, update, self.policy)
            if change == "duplicate":
                return change
            now = self.clock()
            if change == "opened":
                incident = self._incident_for(conn, state, now)
            else:
                assert before is not None and incident_id is not None
                current = self.store.incident_state(conn, incident_id)
                assert current is not None
                material = change in ("reopened", "resolved") or (
                    SEVERITY_RANK[state.peak_severity] > SEVERITY_RANK[before.peak_severity]
                )
                incident = inc.touch(current, state, material)
            self._save(conn, incident, state, now)
            if update["status"] == "firing":  # the update's own window is anomalous
                own = [update[k] for k in ("window_start", "observed", "expected")]
                own += [update["expected_low"], update["expected_high"], True]
                recent = [[*p, False] for p in series]
                self.store.add_series(conn, state.id, [*recent, own])
        return change

    def _incident_for(
        self, conn: Connection, alert: AlertState, now: datetime
    ) -> inc.IncidentState:
        family = self.families.get(alert.latest["metric"], "custom")
        for candidate in self.store.candidate_incidents(conn, family):
            if inc.accepts(candidate, family, alert, self.notify):
                return inc.join(candidate, alert)
        return inc.open_incident(alert, family, now)

    def _save(
        self, conn: Connection, incident: inc.IncidentState, changed: AlertState, now: datetime
    ) -> None:
        others = [i for i in incident.members if i != changed.id]
        members = [*self.store.alert_states(conn, others), changed]
        incident = replace(incident, changed_at=now)
        summary = inc.summarize(members, now, self.policy, incident.changed_at)
        flapping = changed.flapping_at(changed.last_seen, self.policy)
        self.store.save_alert(conn, changed, incident.id, changed.body(incident.id, flapping))
        self.store.save_incident(
            conn, incident, summary, incident_body(incident, summary, summary.flapping)
        )

    # people's actions

    def act(
        self,
        alert_id: str,
        action: str,
        *,
        until: datetime | None = None,
        label: Label | None = None,
    ) -> dict[str, Any]:
        """acknowledge, resolve, snooze (until a time; None: until resolved) or label.

        Raises NotFoundError, or lifecycle.IllegalTransitionError for an action the alert's
        status does not allow."""
        now = self.clock()
        with self.store.transaction() as conn:
            found = self.store.alert_state(conn, alert_id)
            if found is None:
                raise NotFoundError(alert_id)
            state, incident_id = found
            moved = self._apply(state, action, now, until, label)
            incident = self.store.incident_state(conn, incident_id)
            assert incident is not None
            self._save(conn, incident, moved, now)
            return moved.body(incident_id, moved.flapping_at(now, self.policy))

    def act_on_incident(
        self,
        incident_id: str,
        action: str,
        *,
        until: datetime | None = None,
        label: Label | None = None,
    ) -> int:
        """An action on every open alert of an incident (Slack's buttons); how many moved."""
        now = self.clock()
        moved_count = 0
        with self.store.transaction() as conn:
            incident = self.store.incident_state(conn, incident_id)
            if incident is None:
                raise NotFoundError(incident_id)
            for state in self.store.alert_states(conn, incident.members):
                if action != "label" and state.status == "resolved":
                    continue
                self._save(conn, incident, self._apply(state, action, now, until, label), now)
                moved_count += 1
        return moved_count

    @staticmethod
    def _apply(
        state: AlertState,
        action: str,
        now: datetime,
        until: datetime | None,
        label: Label | None,
    ) -> AlertState:
        if action == "acknowledge":
            return lifecycle.acknowledge(state, now)
        if action == "resolve":
            return lifecycle.resolve(state, now)
        if action == "snooze":
            return lifecycle.snooze(state, until, now)
        if action == "label":
            assert label is not None
            return lifecycle.label(state, label, now)
        raise ValueError(f"unknown action {action!r}")

    # notifications

    def enqueue_digest(
        self,
        day: str,
        receivers: Sequence[str],
        markdown: str,
        charts: Sequence[Mapping[str, str]] = (),
    ) -> int:
        """Accept a day's digest for each receiver, once per day and receiver; ``charts``:
        the incidents (``incident_id``, ``title``) whose charts it shows."""
        now = self.clock()
        payload = {
            "kind": "digest",
            "day": day,
            "markdown": markdown,
            "charts": list(charts),
            "accepted_at": iso(now),
        }
        with self.store.transaction() as conn:
            return sum(
                self.store.enqueue(
                    conn, f"{r}|digest|{day}", r, f"digest-{day}", "digest", payload, now
                )
                for r in receivers
            )

    def plan(self) -> int:
        """Accept the notifications that incidents need now into the outbox; how many.

        Each incident is planned in a savepoint of its own: one that cannot be
        planned is logged and left for the next round, the others go on."""
        now = self.clock()
        accepted = 0
        with self.store.transaction() as conn:
            for incident in self.store.active_incidents(conn):
                try:
                    with conn.begin_nested():
                        accepted += self._plan_one(conn, incident, now)
                except Exception:
                    log.exception("incident %s could not be planned", incident.id)
        return accepted

    def _plan_one(self, conn: Connection, incident: inc.IncidentState, now: datetime) -> int:
        members = self.store.alert_states(conn, incident.members)
        summary = inc.summarize(members, now, self.policy, incident.changed_at)
        labels = [self.routing.labels(a.latest, a.peak_severity) for a in members]
        routed = self.routing.receivers_for(labels)
        # a window inside a calendar entry of effect mute is recorded, not notified
        muted = all(
            self.routing.muted(one, now) or (a.latest.get("calendar") or {}).get("effect") == "mute"
            for one, a in zip(labels, members, strict=True)
        )
        kind = inc.due(incident, summary, now, self.notify, muted)
        push = inc.push_due(incident, summary, now, self.notify, muted)
        pushers = [r for r in routed if self.routing.groups_itself(r)]
        messengers = [r for r in routed if r not in pushers]
        if kind is not None and kind != "trigger":  # whoever heard of it hears the rest
            messengers = list(dict.fromkeys((*incident.told, *messengers)))
        if push is not None:
            pushers = list(dict.fromkeys((*incident.pushed_to, *pushers)))
        plan = [(r, kind) for r in messengers if kind] + [(r, push) for r in pushers if push]
        if not plan:
            return 0
        body = incident_body(incident, summary, summary.flapping)
        alerts = [a.body(incident.id, summary.flapping) for a in _ordered(members)]
        like = similar_to(self.store, body, conn) if kind is not None else []
        accepted = 0
        for receiver, step in plan:
            last = incident.last_pushed_at if step == "push" else incident.last_notified_at
            after = iso(last) if last else "first"  # the state it was planned from
            dedupe = f"{receiver}|{incident.id}|{step}|{incident.version}|{after}"
            notice = {"kind": step, "incident": body, "alerts": alerts, "accepted_at": iso(now)}
            if step == "push":
                self.store.supersede(conn, receiver, incident.id, "push")
            else:
                notice["similar"] = like
            accepted += self.store.enqueue(conn, dedupe, receiver, incident.id, step, notice, now)
        told = incident
        if kind is not None:
            told = inc.notified(told, summary, now, messengers)
        if push is not None:
            told = inc.pushed(told, summary, now, pushers)
        body["notified_status"] = told.notified_status
        self.store.save_incident(conn, told, summary, body)
        log.info(
            "incident notification accepted",
            extra={"incident": incident.id, "kind": kind, "push": push, "receivers": plan},
        )
        return accepted


def _ordered(alerts: Sequence[AlertState]) -> list[AlertState]:
    return sorted(
        alerts,
        key=lambda a: (-SEVERITY_RANK[a.peak_severity], len(a.latest["slice"]), -a.peak_score),
    )
