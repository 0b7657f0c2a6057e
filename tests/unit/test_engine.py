"""The engine: windows, lateness, duplicates, and one result however it is partitioned."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest

from services.common.events import event_time, leaf_of
from services.detector.engine.aggregate import Aggregator
from services.detector.engine.calendar import Calendar, parse_entry
from services.detector.engine.catalog import load_catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings, Report
from services.detector.engine.slices import ALL_UP, ancestors, parse_slice_key, slice_key
from services.detector.stages import StageOne, StageThree, StageTwo
from tests.factories import T0, event, outage, traffic

CATALOG = load_catalog()
SETTINGS = EngineSettings()
EVERY_SLICE = replace(SETTINGS, min_slice_volume=0)  # a slice of one event is tracked


def run_engine(
    events: list[dict[str, Any]], flush: bool = True, calendar: Calendar | None = None
) -> list[dict[str, Any]]:
    engine = Engine(CATALOG, SETTINGS, calendar)
    alerts: list[dict[str, Any]] = []
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        alerts += engine.poll()
    return alerts + engine.flush() if flush else alerts


def run_partitioned(
    events: list[dict[str, Any]], partitions: int, calendar: Calendar | None = None
) -> list[dict[str, Any]]:
    """What Kafka mode does: stage one per event partition, stage two per slice
    partition, stage three over the reports of all of them."""
    ones = [StageOne(p, CATALOG, SETTINGS, partitions) for p in range(partitions)]
    twos = [
        StageTwo(q, CATALOG, SETTINGS, partitions, calendar or Calendar())
        for q in range(partitions)
    ]
    three = StageThree(CATALOG, SETTINGS, partitions)
    alerts: list[dict[str, Any]] = []
    for e in events:
        leaf = leaf_of(e)
        p = zlib.crc32("|".join(leaf).encode()) % partitions
        for out in ones[p].on_event(e, event_time(e), leaf, "topic-" + e["type"]):
            targets = (
                [twos[out.partition]]
                if out.partition is not None
                else [twos[zlib.crc32(out.key or b"") % partitions]]
            )
            for stage in targets:
                for report in stage.on_message(out.value):
                    alerts += three.on_message(report)
    return alerts


def test_slice_keys_round_trip_and_leaves_feed_eight_slices() -> None:
    leaf = ("eu", "web", "ios")
    keys = ancestors(leaf)
    assert len(keys) == 8
    assert ALL_UP in keys
    assert slice_key(parse_slice_key("region=eu,channel=web")) == "region=eu,channel=web"


def test_a_window_closes_when_the_watermark_passes_it() -> None:
    engine = Engine(CATALOG, SETTINGS)
    first = event("activity", T0)
    engine.add(first, event_time(first), leaf_of(first))
    assert engine.aggregator.advance() == []
    later = event("activity", T0 + timedelta(minutes=7, seconds=1))
    engine.add(later, event_time(later), leaf_of(later))
    closed = engine.aggregator.advance()
    assert [w.start for w in closed] == [int(T0.timestamp())]
    sessions = CATALOG.count_slots.index(
        next(
            s for s in CATALOG.count_slots if s.where == (("action", frozenset({"session_start"})),)
        )
    )
    assert closed[0].partials[ALL_UP].counts[sessions] == 1.0


def test_windows_the_input_covers_only_in_part_are_counted_never_judged() -> None:
    """A stream that begins at 00:03 and ends at 00:26: the windows of 00:00 and
    00:25 hold part of what happened in them, those between all of it."""
    engine = Engine(CATALOG, EVERY_SLICE)
    begin = T0 + timedelta(minutes=3)
    for minute in range(24):
        e = event("activity", begin + timedelta(minutes=minute))
        engine.add(e, event_time(e), leaf_of(e))
        engine.poll()  # the watermark: 00:26 less two minutes at the end
    start = int(T0.timestamp())
    assert engine.evaluator.evaluated_until == start + 1200
    assert engine.evaluator.slices[ALL_UP].since == start + 300  # its first window judged
    assert engine.incomplete == 1
    engine.flush()  # the end of the input
    assert engine.evaluator.evaluated_until == start + 1500
    assert engine.incomplete == 2
    assert engine.aggregator.windows == {}


def test_a_partition_whose_first_event_comes_later_has_its_part_judged() -> None:
    """Two detector partitions, one of them first heard at 00:00, the other at
    00:01: the stream began at 00:00, so the window of 00:00 is judged whole (both
    partitions' slices, as one engine judges it), not with the second one's part
    missing. A stream begun at 00:01 leaves it unjudged, counted once by each
    partition of stage two; so does one whose first two events come out of
    order (00:05:01, then 00:04:58 on the other partition): it began at 00:04:58,
    and the window of 00:05 is judged."""
    leaves = [("eu", "web", "ios"), ("na", "app", "android"), ("apac", "web", "desktop")]
    by_partition = {zlib.crc32("|".join(leaf).encode()) % 2: leaf for leaf in leaves}
    assert len(by_partition) == 2
    first, second = by_partition[0], by_partition[1]

    def at(leaf: tuple[str, str, str], seconds: int, user: str) -> dict[str, Any]:
        when = T0 + timedelta(seconds=seconds)
        return event(
            "activity", when, region=leaf[0], channel=leaf[1], platform=leaf[2], user_id=user
        )

    def later(since: int) -> list[dict[str, Any]]:
        return [at(leaf, 60 * m, f"u-{m}") for m in range(since, 18) for leaf in (first, second)]

    start = int(T0.timestamp())
    streams = [
        ([at(first, 0, "u-1"), at(second, 60, "u-2"), *later(2)], start, 0),
        ([at(second, 60, "u-2"), *later(2)], start + 300, 2),
        ([at(second, 301, "u-2"), at(first, 298, "u-1"), *later(6)], start + 300, 2),
    ]
    for events, judged_from, incomplete in streams:
        engine = Engine(CATALOG, EVERY_SLICE)
        for e in events:
            engine.add(e, event_time(e), leaf_of(e))
            engine.poll()
        ones = [StageOne(p, CATALOG, EVERY_SLICE, 2) for p in range(2)]
        twos = [StageTwo(q, CATALOG, EVERY_SLICE, 2, Calendar()) for q in range(2)]
        for e in events:
            leaf = leaf_of(e)
            p = zlib.crc32("|".join(leaf).encode()) % 2
            for out in ones[p].on_event(e, event_time(e), leaf, "topic-activity"):
                q = out.partition if out.partition is not None else zlib.crc32(out.key or b"") % 2
                twos[q].on_message(out.value)
        split = {k: s.since for two in twos for k, s in two.evaluator.slices.items()}
        assert split == {k: s.since for k, s in engine.evaluator.slices.items()}
        assert split[ALL_UP] == judged_from
        assert sum(two.evaluator.incomplete for two in twos) == incomplete


def test_late_events_are_counted_not_applied_and_duplicates_dropped() -> None:
    engine = Engine(CATALOG, SETTINGS)
    for e in (event("activity", T0), event("activity", T0 + timedelta(minutes=20))):
        assert engine.add(e, event_time(e), leaf_of(e))
    late = event("activity", T0 + timedelta(minutes=1))
    assert not engine.add(late, event_time(late), leaf_of(late))
    dup = event("activity", T0 + timedelta(minutes=20), event_id="same")
    assert engine.add(dup, event_time(dup), leaf_of(dup))
    assert not engine.add(dup, event_time(dup), leaf_of(dup))
    stats = engine.aggregator.stats
    assert (stats.applied, stats.late, stats.duplicates) == (3, 1, 1)


def test_a_slow_source_does_not_make_the_others_late() -> None:
    engine = Engine(CATALOG, SETTINGS)
    agg = engine.aggregator
    fast = event("order", T0 + timedelta(minutes=10))
    slow = event("activity", T0 + timedelta(minutes=1))
    assert agg.add(fast, event_time(fast), leaf_of(fast), "orders")
    assert agg.add(slow, event_time(slow), leaf_of(slow), "activity")
    assert agg.stats.late == 0


def test_a_source_ahead_of_the_slowest_by_more_than_the_alignment_is_named() -> None:
    """A backfill written topic after topic: orders run ahead of a feedback topic not
    heard from yet (it counts as at the stream's beginning), then of a slow one, until
    that one catches up or goes idle."""
    agg = Aggregator(CATALOG, expected=("orders", "feedback"))
    for minutes in range(0, 60, 5):
        e = event("order", T0 + timedelta(minutes=minutes))
        agg.add(e, event_time(e), leaf_of(e), "orders")
    assert agg.ahead(30 * 60) == {"orders"}
    assert agg.ahead(60 * 60) == set()
    slow = event("feedback", T0 + timedelta(minutes=20))
    agg.add(slow, event_time(slow), leaf_of(slow), "feedback")
    assert agg.ahead(40 * 60) == set()
    assert agg.ahead(30 * 60) == {"orders"}
    agg.mark_idle("feedback")
    assert agg.ahead(30 * 60) == set()


# the outage's hour muted on its slice, and a sale expected in another region
CALENDAR = Calendar.of(
    [
        parse_entry(
            {
                "name": "Release night",
                "start": (T0 + timedelta(hours=16, minutes=30)).isoformat(),
                "end": (T0 + timedelta(hours=19)).isoformat(),
                "slices": [{"region": "eu", "channel": "web"}],
                "effect": "mute",
            }
        ),
        parse_entry(
            {
                "name": "Sale",
                "start": (T0 + timedelta(hours=15)).isoformat(),
                "end": (T0 + timedelta(hours=20)).isoformat(),
                "slices": [{"region": "na"}],
                "effect": "expect",
                "expect": {"order_count": 1.5, "conversion_rate": 1.2},
            }
        ),
    ]
)


@pytest.mark.parametrize(
    ("calendar", "partitionings"), [(None, (1, 3)), (CALENDAR, (3,))], ids=["plain", "calendar"]
)
def test_partitioned_stages_give_the_alerts_of_one_engine(
    calendar: Calendar | None, partitionings: tuple[int, ...]
) -> None:
    events = traffic(
        8,
        rate=200,
        start=T0 + timedelta(hours=12),
        incidents=[
            outage({"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=1))
        ],
    )
    # streaming never reaches the end of input
    single = run_engine(events, flush=False, calendar=calendar)
    hit = next(a for a in single if a["metric"] == "conversion_rate")
    assert ("calendar" in hit) == (calendar is not None)
    for partitions in partitionings:
        split = run_partitioned(events, partitions, calendar)
        key = lambda a: (a["id"], a["updated_at"], a["status"])  # noqa: E731
        assert sorted(split, key=key) == sorted(single, key=key), f"{partitions} partitions"


def test_snapshot_and_restore_continue_where_they_left_off() -> None:
    events = traffic(6, rate=150, seed=3)
    half = len(events) // 2
    straight = run_engine(events)
    first = Engine(CATALOG, SETTINGS)
    alerts: list[dict[str, Any]] = []
    for e in events[:half]:
        first.add(e, event_time(e), leaf_of(e))
        alerts += first.poll()
    resumed = Engine(CATALOG, SETTINGS)
    resumed.restore(first.snapshot())
    for e in events[half:]:
        resumed.add(e, event_time(e), leaf_of(e))
        alerts += resumed.poll()
    alerts += resumed.flush()
    assert alerts == straight


class Crashing:
    """Kafka mode with the failures of at-least-once: each stage reads a log per
    partition, snapshots now and then, and now and then a stage dies and a new one
    resumes from its last snapshot with the log's read position put back further
    still (a committed offset behind the snapshot), so records are read again and
    outputs sent again downstream."""

    def __init__(self, partitions: int) -> None:
        self.n = partitions
        self.ones = [StageOne(p, CATALOG, SETTINGS, partitions) for p in range(partitions)]
        self.twos = [StageTwo(q, CATALOG, SETTINGS, partitions) for q in range(partitions)]
        self.three = StageThree(CATALOG, SETTINGS, partitions)
        self.events: list[list[dict[str, Any]]] = [[] for _ in range(partitions)]
        self.partials: list[list[bytes]] = [[] for _ in range(partitions)]
        self.reports: list[bytes] = []
        self.read = {("one", p): 0 for p in range(partitions)}
        self.read |= {("two", q): 0 for q in range(partitions)}
        self.read[("three", 0)] = 0
        self.saved: dict[tuple[str, int], bytes] = {}
        self.alerts: list[dict[str, Any]] = []

    def add(self, e: dict[str, Any]) -> None:
        self.events[zlib.crc32("|".join(leaf_of(e)).encode()) % self.n].append(e)

    def pump(self, only: int | None = None) -> None:
        """Every stage reads what is new to it (``only``: that stage one, nothing else)."""
        for p, one in enumerate(self.ones):
            if only is not None and p != only:
                continue
            for offset, e in self._unread(("one", p), self.events[p]):
                if not one.positions.applied("events", offset):
                    for out in one.on_event(e, event_time(e), leaf_of(e), "topic-" + e["type"]):
                        q = out.partition
                        q = zlib.crc32(out.key or b"") % self.n if q is None else q
                        self.partials[q].append(out.value)
                    one.positions.advance("events", offset)
        if only is not None:
            return
        for q, two in enumerate(self.twos):
            for offset, value in self._unread(("two", q), self.partials[q]):
                if not two.positions.applied("partials", offset):
                    self.reports += two.on_message(value)
                    two.positions.advance("partials", offset)
        for offset, value in self._unread(("three", 0), self.reports):
            if not self.three.positions.applied("reports", offset):
                self.alerts += self.three.on_message(value)
                self.three.positions.advance("reports", offset)

    def _unread(self, stage: tuple[str, int], log: list[Any]) -> list[tuple[int, Any]]:
        start = self.read[stage]
        self.read[stage] = len(log)
        return list(enumerate(log[start:], start))

    def stages(self) -> dict[tuple[str, int], StageOne | StageTwo | StageThree]:
        found: dict[tuple[str, int], StageOne | StageTwo | StageThree] = {("three", 0): self.three}
        found |= {("one", p): s for p, s in enumerate(self.ones)}
        return found | {("two", q): s for q, s in enumerate(self.twos)}

    def snapshot(self) -> None:
        self.saved = {key: b"".join(stage.snapshot()) for key, stage in self.stages().items()}

    def crash(self, key: tuple[str, int], behind: int) -> None:
        kind, p = key
        stage: StageOne | StageTwo | StageThree
        if kind == "one":
            stage = self.ones[p] = StageOne(p, CATALOG, SETTINGS, self.n)
        elif kind == "two":
            stage = self.twos[p] = StageTwo(p, CATALOG, SETTINGS, self.n)
        else:
            stage = self.three = StageThree(CATALOG, SETTINGS, self.n)
        stage.restore([self.saved[key]])
        resume = next(iter(stage.positions.last.values()), -1) + 1
        self.read[key] = max(0, resume - behind)


def test_stages_that_die_and_resume_from_old_snapshots_apply_nothing_twice() -> None:
    events = traffic(
        8,
        rate=200,
        start=T0 + timedelta(hours=12),
        incidents=[
            outage({"region": "eu", "channel": "web"}, timedelta(hours=17), timedelta(hours=1))
        ],
    )
    single = run_engine(events, flush=False)
    run = Crashing(3)
    ahead: tuple[int, int] | None = None  # (partition, when it dies): read alone till then
    for i, e in enumerate(events, 1):
        run.add(e)
        if i % 500 == 0:
            run.pump(only=ahead[0] if ahead else None)
        if i % 7000 == 0:
            run.snapshot()
        if i % 7000 == 3500 and i > 7000:  # each stage in turn
            stages = sorted(run.stages())
            victim = stages[(i // 7000) % len(stages)]
            if victim[0] == "one":  # partials sent while the other partitions lag
                ahead = (victim[1], i + 3000)
            else:
                run.crash(victim, behind=(i // 7000) * 37)
        if ahead and i == ahead[1]:
            run.crash(("one", ahead[0]), behind=(i // 7000) * 37)
            ahead = None
    run.pump()
    applied = sum(one.aggregator.stats.applied for one in run.ones)
    assert applied == len(events)
    dropped = sum(two.duplicates for two in run.twos) + run.three.duplicates
    assert dropped > 0  # outputs did come twice
    key = lambda a: (a["id"], a["updated_at"], a["status"])  # noqa: E731
    assert sorted(set(map(key, run.alerts))) == sorted(set(map(key, single)))
    assert len(run.alerts) > len(single)  # the repeats are the alerting store's to absorb


QUIET = T0 + timedelta(hours=26)


def run_with_a_quiet_topic(quiet_until: float | None) -> tuple[list[dict[str, Any]], StageTwo]:
    """A day and three hours of traffic through the three stages, the activity topic
    going quiet after a day and two hours and marked idle, vouched for up to
    ``quiet_until`` or not."""
    topics = {"order": "orders", "activity": "activity", "feedback": "feedback"}
    one = StageOne(
        0, CATALOG, SETTINGS, 1, tuple(topics.values()), {t: k for k, t in topics.items()}
    )
    two = StageTwo(0, CATALOG, SETTINGS, 1)
    three = StageThree(CATALOG, SETTINGS, 1)
    alerts: list[dict[str, Any]] = []

    def deliver(out: list[Any]) -> None:
        for o in out:
            for report in two.on_message(o.value):
                alerts.extend(three.on_message(report))

    quiet = QUIET.timestamp()
    for e in traffic(27, rate=30):
        ts = event_time(e)
        if e["type"] == "activity" and ts >= quiet:
            if "activity" not in one.aggregator.sources.idle:
                deliver(one.mark_idle("activity", quiet_until))
            continue
        deliver(one.on_event(e, ts, leaf_of(e), topics[e["type"]]))
    return alerts, two


ACTIVITY = {m.name for m in CATALOG.metrics if m.reads & {"activity", "*"}}


def test_a_topic_idle_in_a_backfill_leaves_its_metrics_unjudged_not_alerted() -> None:
    after = QUIET.isoformat().replace("+00:00", "Z")
    alerts, two = run_with_a_quiet_topic(None)
    assert [a for a in alerts if a["metric"] in ACTIVITY and a["window_start"] >= after] == []
    assert two.evaluator.unjudged["idle_source"] > 0
    # a live stream's quiet topic had nothing to say: its silence is judged, and alerts
    alerts, two = run_with_a_quiet_topic((QUIET + timedelta(hours=2)).timestamp())
    assert {a["metric"] for a in alerts if a["window_start"] >= after} & ACTIVITY
    assert two.evaluator.unjudged["idle_source"] == 0


def test_a_heartbeat_holds_windows_open_for_a_partition_taken_for_idle() -> None:
    two = StageTwo(1, CATALOG, SETTINGS, 2)
    t = int(T0.timestamp())

    def mark(src: int, wm: int) -> None:
        two.on_message(orjson.dumps({"k": "wm", "src": src, "wm": wm}))

    mark(1, t + 300)
    mark(0, t + 3600)
    assert two.evaluator.evaluated_until == t + 300
    two.mark_idle(1)
    assert two.evaluator.evaluated_until == t + 3600
    # partition 1 is still reading (a topic held back, records left): it counts again,
    # and stage two tells stage three that it is waiting too
    three = StageThree(CATALOG, SETTINGS, 2)
    three.on_message(orjson.dumps({"src": 1, **Report(t + 300).to_json()}))
    three.on_message(orjson.dumps({"src": 0, **Report(t + 3600).to_json()}))
    three.mark_idle(1)
    assert three.book.marks.low(three.book.sources) == t + 3600
    for beat in two.on_message(orjson.dumps({"k": "hb", "src": 1})):
        three.on_message(beat)
    assert three.book.marks.low(three.book.sources) == t + 300
    mark(0, t + 7200)
    assert two.evaluator.evaluated_until == t + 3600
    mark(1, t + 7200)
    assert two.evaluator.evaluated_until == t + 7200
