"""The alert lifecycle as pure transitions, with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.alerting import lifecycle as lc
from tests.factories import detector_update

T = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
POLICY = lc.Policy(cooldown=timedelta(minutes=30), flap_window=timedelta(hours=2), flap_count=3)


def fire(start: datetime = T, windows: int = 1, **over: Any) -> lc.AlertState:
    state, change = lc.observe(None, detector_update(start=start, **over), POLICY)
    assert change == "opened"
    for w in range(1, windows):
        state, _ = lc.observe(state, detector_update(start=start, window=w, **over), POLICY)
    return state


def test_updates_of_an_episode_move_one_alert_and_keep_the_peaks() -> None:
    state = fire(score=0.95, severity="critical")
    state, change = lc.observe(
        state, detector_update(window=1, score=0.6, severity="warning"), POLICY
    )
    assert change == "updated"
    assert (state.windows, state.peak_score, state.peak_severity) == (2, 0.95, "critical")
    assert state.last_seen == T + timedelta(minutes=10)
    assert state.latest["severity"] == "warning"


def test_redelivered_and_stale_updates_are_duplicates() -> None:
    state = fire(windows=3)
    again, change = lc.observe(state, detector_update(window=1), POLICY)
    assert change == "duplicate" and again is state


def test_resolve_then_new_episode_within_cooldown_reopens_the_same_alert() -> None:
    state = fire(windows=2)
    resolved = detector_update(window=4, status="resolved", windows=2)
    state, change = lc.observe(state, resolved, POLICY)
    assert change == "resolved" and state.status == "resolved"
    later = T + timedelta(minutes=40)  # 30 minutes after the last anomalous window
    state, change = lc.observe(state, detector_update(start=later), POLICY)
    assert change == "reopened"
    assert state.status == "firing" and state.resolved_at is None
    assert state.windows == 3 and len(state.reopens) == 1


def test_new_episode_after_the_cooldown_is_a_new_alert() -> None:
    state = fire()
    state, _ = lc.observe(state, detector_update(window=3, status="resolved"), POLICY)
    later = T + timedelta(minutes=41)
    fresh, change = lc.observe(state, detector_update(start=later), POLICY)
    assert change == "opened" and fresh.id != state.id


def test_a_new_episode_while_one_is_open_stays_one_alert() -> None:
    state = fire()
    moved, change = lc.observe(state, detector_update(start=T + timedelta(minutes=5)), POLICY)
    assert change == "updated" and moved.id == state.id and moved.windows == 2


def test_three_reopens_within_the_flap_window_are_flapping() -> None:
    state = fire()
    start = T
    for i in range(3):
        state, _ = lc.observe(
            state, detector_update(start=start, window=3, status="resolved"), POLICY
        )
        assert not state.flapping_at(start + timedelta(minutes=20), POLICY) or i == 3
        start = start + timedelta(minutes=25)
        state, change = lc.observe(state, detector_update(start=start), POLICY)
        assert change == "reopened"
    assert state.flapping_at(start, POLICY)
    assert not state.flapping_at(start + timedelta(hours=2), POLICY)


def test_acknowledge_resolve_and_their_illegal_moves() -> None:
    now = T + timedelta(hours=1)
    state = lc.acknowledge(fire(), now)
    assert state.status == "acknowledged" and state.acknowledged_at == now
    assert lc.acknowledge(state, now) is state
    done = lc.resolve(state, now)
    assert (done.status, done.resolved_by) == ("resolved", "user")
    for action in (lc.acknowledge, lc.resolve):
        with pytest.raises(lc.IllegalTransitionError):
            action(done, now)
    with pytest.raises(lc.IllegalTransitionError):
        lc.snooze(done, None, now)


def test_a_snooze_until_resolved_ends_when_the_alert_resolves() -> None:
    now = T + timedelta(minutes=6)
    state = lc.snooze(fire(), None, now)
    assert state.snoozed(now + timedelta(days=30))
    state, change = lc.observe(state, detector_update(window=3, status="resolved"), POLICY)
    assert change == "resolved" and not state.snoozed(now)
    assert not state.snoozed_until_resolved


def test_a_timed_snooze_ends_by_itself_and_must_end_in_the_future() -> None:
    now = T + timedelta(minutes=6)
    state = lc.snooze(fire(), now + timedelta(hours=1), now)
    assert state.snoozed(now + timedelta(minutes=59))
    assert not state.snoozed(now + timedelta(hours=1))
    with pytest.raises(lc.IllegalTransitionError):
        lc.snooze(fire(), now - timedelta(seconds=1), now)


def test_updates_after_a_manual_resolve_are_absorbed() -> None:
    state = lc.resolve(fire(), T + timedelta(minutes=6))
    state, change = lc.observe(state, detector_update(window=1), POLICY)
    assert change == "absorbed" and state.status == "resolved"


def test_state_round_trips_through_its_json_form() -> None:
    state = lc.label(lc.snooze(fire(windows=2), T + timedelta(hours=3), T), "expected", T)
    assert lc.load(lc.dump(state)) == state
