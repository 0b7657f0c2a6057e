"""The alert lifecycle: pure transitions, the clock passed in.

The detector publishes *episodes*: one detector alert id per stretch of
anomalous windows of a fingerprint (metric + slice), updated every window it
holds and resolved after a number of normal windows. An *alert* here is what
people act on: one open alert per fingerprint, which

- absorbs every update of its episode (last seen, peak score and severity,
  window count) and redeliveries of old ones;
- takes a new episode that starts within the cool-down after the last
  anomalous window as a reopen, not as a new alert;
- is acknowledged, resolved, snoozed (until a time, or until it resolves) and
  labelled by people; a snooze ends by itself when the alert resolves;
- remembers its recent reopens: it is flapping while ``flap_count`` of them
  fall within ``flap_window``, and notifications do not follow every flip.

Detector-driven transitions run on event time (the episode's window times),
so a replay gives the same alerts; people's actions carry the wall clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter

Status = Literal["firing", "acknowledged", "resolved"]
Label = Literal["true_positive", "false_positive", "expected"]
Change = Literal["opened", "updated", "reopened", "resolved", "absorbed", "duplicate"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class IllegalTransitionError(ValueError):
    """An action that the alert's current status does not allow."""


@dataclass(frozen=True)
class Policy:
    cooldown: timedelta = timedelta(minutes=30)
    flap_window: timedelta = timedelta(hours=2)
    flap_count: int = 3


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class AlertState:
    """One alert as people see it; ``latest`` is the last episode update applied."""

    id: str
    latest: Mapping[str, Any]
    status: Status
    started_at: datetime
    last_seen: datetime
    updated_at: datetime
    episode: str
    episode_updated_at: datetime
    earlier_windows: int = 0
    peak_score: float = 0.0
    peak_severity: str = "info"
    resolved_at: datetime | None = None
    resolved_by: Literal["detector", "user"] | None = None
    acknowledged_at: datetime | None = None
    snoozed_until: datetime | None = None
    snoozed_until_resolved: bool = False
    label: Label | None = None
    reopens: tuple[datetime, ...] = field(default_factory=tuple)

    @property
    def windows(self) -> int:
        return self.earlier_windows + int(self.latest.get("windows") or 1)

    def flapping_at(self, now: datetime, policy: Policy) -> bool:
        """Whether enough reopens fall within the flap window before ``now``."""
        return sum(1 for t in self.reopens if now - t < policy.flap_window) >= policy.flap_count

    def snoozed(self, now: datetime) -> bool:
        if self.status == "resolved":
            return False
        return self.snoozed_until_resolved or (
            self.snoozed_until is not None and self.snoozed_until > now
        )

    def body(self, incident_id: str | None = None, flapping: bool = False) -> dict[str, Any]:
        """The alert as the API serves it: the latest update plus the lifecycle."""
        out = dict(self.latest)
        out.update(
            id=self.id,
            status=self.status,
            started_at=iso(self.started_at),
            updated_at=iso(self.updated_at),
            resolved_at=iso(self.resolved_at) if self.resolved_at else None,
            windows=self.windows,
            last_seen=iso(self.last_seen),
            peak_score=self.peak_score,
            peak_severity=self.peak_severity,
            acknowledged_at=iso(self.acknowledged_at) if self.acknowledged_at else None,
            snoozed_until=iso(self.snoozed_until) if self.snoozed_until else None,
            snoozed_until_resolved=self.snoozed_until_resolved,
            label=self.label,
            reopens=len(self.reopens),
            flapping=flapping,
            incident_id=incident_id,
        )
        return out


def _peaks(state: AlertState, update: Mapping[str, Any]) -> dict[str, Any]:
    severity = update["severity"]
    if SEVERITY_RANK[state.peak_severity] > SEVERITY_RANK[severity]:
        severity = state.peak_severity
    return {"peak_score": max(state.peak_score, update["score"]), "peak_severity": severity}


def _resolved_at(update: Mapping[str, Any]) -> datetime:
    return parse_time(update["resolved_at"] or update["updated_at"])


def open_alert(update: Mapping[str, Any]) -> AlertState:
    """A new alert from the first update seen of an episode."""
    resolved = update["status"] == "resolved"
    return AlertState(
        id=update["id"],
        latest=dict(update),
        status="resolved" if resolved else "firing",
        started_at=parse_time(update["started_at"]),
        last_seen=parse_time(update["window_end"]),
        updated_at=parse_time(update["updated_at"]),
        episode=update["id"],
        episode_updated_at=parse_time(update["updated_at"]),
        peak_score=update["score"],
        peak_severity=update["severity"],
        resolved_at=_resolved_at(update) if resolved else None,
        resolved_by="detector" if resolved else None,
    )


def observe(
    state: AlertState | None, update: Mapping[str, Any], policy: Policy
) -> tuple[AlertState, Change]:
    """Apply one detector update to the fingerprint's latest alert (None: none yet).

    "opened" means a new alert (the returned state has a new id); the old one,
    if any, stays as it was.
    """
    if state is None:
        return open_alert(update), "opened"
    updated_at = parse_time(update["updated_at"])
    if update["id"] == state.episode:
        if updated_at <= state.episode_updated_at:
            return state, "duplicate"
        return _continue(state, update, updated_at)
    if parse_time(update["started_at"]) <= parse_time(state.latest["started_at"]):
        return state, "duplicate"  # a redelivery of an episode already taken over
    if state.status != "resolved":  # the episode's resolve went missing: still one alert
        return _continue(
            replace(state, earlier_windows=state.windows, episode=update["id"]), update, updated_at
        )
    window_start = parse_time(update["window_start"])
    if window_start - state.last_seen > policy.cooldown:
        return open_alert(update), "opened"
    reopens = tuple(
        t for t in (*state.reopens, window_start) if window_start - t < policy.flap_window
    )
    reopened = replace(
        state,
        status="firing",
        resolved_at=None,
        resolved_by=None,
        acknowledged_at=None,
        snoozed_until=None,
        snoozed_until_resolved=False,
        earlier_windows=state.windows,
        episode=update["id"],
        reopens=reopens,
    )
    moved, change = _continue(reopened, update, updated_at)
    return moved, "reopened" if change == "updated" else change


def _continue(
    state: AlertState, update: Mapping[str, Any], updated_at: datetime
) -> tuple[AlertState, Change]:
    base = replace(
        state,
        latest=dict(update),
        episode_updated_at=updated_at,
        updated_at=max(state.updated_at, updated_at),
    )
    if update["status"] == "resolved":
        if state.status == "resolved":
            return base, "absorbed"
        return replace(
            base,
            status="resolved",
            resolved_at=_resolved_at(update),
            resolved_by="detector",
            snoozed_until=None,
            snoozed_until_resolved=False,
        ), "resolved"
    moved = replace(base, last_seen=parse_time(update["window_end"]), **_peaks(state, update))
    return moved, "absorbed" if state.status == "resolved" else "updated"


def acknowledge(state: AlertState, now: datetime) -> AlertState:
    if state.status == "resolved":
        raise IllegalTransitionError("a resolved alert cannot be acknowledged")
    if state.status == "acknowledged":
        return state
    return replace(state, status="acknowledged", acknowledged_at=now, updated_at=now)


def resolve(state: AlertState, now: datetime) -> AlertState:
    if state.status == "resolved":
        raise IllegalTransitionError("the alert is already resolved")
    return replace(
        state,
        status="resolved",
        resolved_at=now,
        resolved_by="user",
        snoozed_until=None,
        snoozed_until_resolved=False,
        updated_at=now,
    )


def snooze(state: AlertState, until: datetime | None, now: datetime) -> AlertState:
    """Silence an open alert until a time, or (``until=None``) until it resolves."""
    if state.status == "resolved":
        raise IllegalTransitionError("a resolved alert cannot be snoozed")
    if until is not None and until <= now:
        raise IllegalTransitionError("a snooze must end in the future")
    return replace(state, snoozed_until=until, snoozed_until_resolved=until is None, updated_at=now)


def label(state: AlertState, value: Label, now: datetime) -> AlertState:
    return replace(state, label=value, updated_at=now)


_CODEC: TypeAdapter[AlertState] = TypeAdapter(AlertState)


def dump(state: AlertState) -> dict[str, Any]:
    """The state as JSON-ready values (the store keeps it beside the served body)."""
    return _CODEC.dump_python(state, mode="json")  # type: ignore[no-any-return]


def load(data: Mapping[str, Any]) -> AlertState:
    return _CODEC.validate_python(data)
