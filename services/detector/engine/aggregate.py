"""Stage one: events into event-time tumbling windows per leaf slice.

Each source (a topic, or a file) advances its own high-water mark; the
watermark is the slowest source's mark minus the allowed lateness, so a topic
that is read behind another (a consumer catching up reads unevenly) does not
make its events late. When the sources are known beforehand (``expected``), the
watermark waits until each has been heard from or marked idle: otherwise a
topic whose first records are read after another's would find its windows
closed already. Whether a source has gone quiet is a wall-clock question
the engine cannot answer: the adapter marks a source idle, which stops it
holding the watermark back until its next event. When the watermark passes a window's
end, the window closes and is rolled up into partial aggregates for every slice
its leaves feed. An event whose window the watermark had already passed when it arrived is
late: counted, never applied. Lateness follows from event time alone, so it
does not matter how often the caller asks for closed windows.

Per-user history (for returning and lapsed users) lives here, beside the leaf
slice that owns the user's events, and is updated as windows close, in window
order: so it too follows from event time alone. When the catalog counts lapsed
users, every window boundary the watermark passes is closed, even one without
events, since users lapse in silence too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from .catalog import Catalog, CountSlot, DistinctSlot
from .marks import Marks
from .slices import Leaf, ancestors


@lru_cache(maxsize=1 << 16)  # users come back: most events hash a user seen recently
def user_hash(user_id: str) -> int:
    """A stable 63-bit hash of a user id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest()) >> 1


@dataclass
class Acc:
    """Mergeable aggregates of one window: numbers per count slot, sets per distinct slot."""

    counts: list[float]
    distinct: list[set[int]]

    @classmethod
    def empty(cls, catalog: Catalog) -> Acc:
        return cls([0.0] * len(catalog.count_slots), [set() for _ in catalog.distinct_slots])

    def merge(self, other: Acc) -> None:
        for i, value in enumerate(other.counts):
            self.counts[i] += value
        for mine, theirs in zip(self.distinct, other.distinct, strict=True):
            mine.update(theirs)

    def to_json(self) -> dict[str, Any]:
        return {"c": self.counts, "d": [sorted(s) for s in self.distinct]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Acc:
        return cls([float(v) for v in raw["c"]], [set(s) for s in raw["d"]])


@dataclass(frozen=True)
class ClosedWindow:
    start: int
    partials: dict[str, Acc]  # slice key -> aggregates


@dataclass
class AggregatorStats:
    applied: int = 0
    late: int = 0
    duplicates: int = 0
    incomplete: int = 0  # windows the stream covered only in part: closed, never judged


def _matches(slot: CountSlot | DistinctSlot, event: Mapping[str, Any]) -> bool:
    # a loop, not all() over a generator: this runs for every slot of every event
    for key, allowed in slot.where:  # noqa: SIM110
        if event.get(key) not in allowed:
            return False
    return True


Slot = TypeVar("Slot", CountSlot, DistinctSlot)


def _slot_plan(slots: tuple[Slot, ...]) -> dict[str | None, list[tuple[int, Slot]]]:
    plan: dict[str | None, list[tuple[int, Slot]]] = {}
    for i, slot in enumerate(slots):
        plan.setdefault(slot.type, []).append((i, slot))
    return plan


@dataclass
class History:
    """When each user of one leaf slice (and one predicate) was last active.

    ``by_window`` holds, per window start, the users last active then; windows
    are recorded in order, so its keys ascend and the oldest comes first.
    """

    last: dict[int, int] = field(default_factory=dict)  # user -> window start
    by_window: dict[int, set[int]] = field(default_factory=dict)

    def returning(self, start: int, within: int, active: set[int]) -> set[int]:
        since = start - within
        return {u for u in active if self.last.get(u, since - 1) >= since}

    def lapsed(self, start: int, horizon: int, active: set[int]) -> set[int]:
        """Users last active exactly ``horizon`` before this window and not in it."""
        return self.by_window.get(start - horizon, set()) - active

    def record(self, start: int, active: set[int]) -> None:
        for u in active:
            before = self.last.get(u)
            if before is not None:
                bucket = self.by_window[before]
                bucket.discard(u)
                if not bucket:
                    del self.by_window[before]
            self.last[u] = start
        if active:
            self.by_window[start] = set(active)

    def forget_before(self, cutoff: int) -> None:
        while self.by_window:
            oldest = next(iter(self.by_window))
            if oldest >= cutoff:
                return
            for u in self.by_window.pop(oldest):
                del self.last[u]

    def to_json(self) -> list[list[Any]]:
        return [[t, sorted(users)] for t, users in self.by_window.items()]

    @classmethod
    def from_json(cls, raw: list[list[Any]]) -> History:
        hist = cls()
        for t, users in raw:
            hist.by_window[int(t)] = set(users)
            for u in users:
                hist.last[u] = int(t)
        return hist


@dataclass
class Aggregator:
    catalog: Catalog
    window_s: int = 300
    lateness_s: int = 120
    windows: dict[int, dict[Leaf, Acc]] = field(default_factory=dict)
    seen_ids: dict[int, set[str]] = field(default_factory=dict)
    sources: Marks = field(default_factory=Marks)
    closed_until: int | None = None  # every window starting before this is closed
    stats: AggregatorStats = field(default_factory=AggregatorStats)
    history: dict[tuple[Leaf, int], History] = field(default_factory=dict)  # (leaf, base slot)
    expected: tuple[str, ...] = ()  # the sources to wait for (none: those heard from)
    # each source's first event time: a window that started before the stream's
    # first event holds only part of what happened in it
    begun: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = self.window_s
        self._counts = _slot_plan(self.catalog.count_slots)
        slots = self.catalog.distinct_slots
        self._distinct = {
            t: [(i, s) for i, s in plan if slots[i].base is None]
            for t, plan in _slot_plan(slots).items()
        }
        # history slots per base slot: (index, returning within, lapsed after), in windows
        self._history: dict[int, list[tuple[int, int | None, int | None]]] = {}
        for i, slot in enumerate(slots):
            if slot.base is not None:
                within = slot.seen_within
                lapse = -(-slot.lapsed_after // w) * w if slot.lapsed_after else None
                self._history.setdefault(slot.base, []).append((i, within, lapse))
        self._keep = {
            base: max((x or 0) for _, within, lapse in hs for x in (within, lapse))
            for base, hs in self._history.items()
        }
        self._lapses = any(lapse for hs in self._history.values() for _, _, lapse in hs)
        self._newest = -math.inf  # the newest event time of any source: bounds the watermark

    def add(self, event: Mapping[str, Any], ts: float, leaf: Leaf, source: str = "") -> bool:
        """Apply one validated event; False when it is late or a duplicate."""
        self.sources.advance(source, ts)
        if source not in self.begun:
            self.begun[source] = ts
        self._newest = max(self._newest, ts)
        start = int(ts // self.window_s) * self.window_s
        end = start + self.window_s
        # the watermark is at most the newest event time less the lateness: a window
        # that ends after that cannot have been passed, without asking every source
        if (self.closed_until is not None and start < self.closed_until) or (
            end <= self._newest - self.lateness_s
            and (wm := self.watermark) is not None
            and end <= wm
        ):
            self.stats.late += 1
            return False
        ids = self.seen_ids.setdefault(start, set())
        event_id = event["event_id"]
        if event_id in ids:
            self.stats.duplicates += 1
            return False
        ids.add(event_id)
        leaves = self.windows.setdefault(start, {})
        acc = leaves.get(leaf)
        if acc is None:
            acc = leaves[leaf] = Acc.empty(self.catalog)
        etype = event["type"]
        counts = acc.counts
        for plan in (self._counts.get(etype), self._counts.get(None)):
            for i, slot in plan or ():
                if _matches(slot, event):
                    if slot.power == 0:
                        counts[i] += 1.0
                    else:
                        counts[i] += float(event[slot.field]) ** slot.power  # type: ignore[index]
        for users in (self._distinct.get(etype), self._distinct.get(None)):
            for i, dslot in users or ():
                if _matches(dslot, event):
                    acc.distinct[i].add(user_hash(event["user_id"]))
        self.stats.applied += 1
        return True

    @property
    def watermark(self) -> float | None:
        low = self.sources.low(self.expected or None)
        return None if low is None else low - self.lateness_s

    def mark_idle(self, source: str) -> None:
        """The source has gone quiet (the caller's clock says so): stop waiting for it."""
        self.sources.mark_idle(source)

    def ahead(self, bound_s: float) -> set[str]:
        """The sources whose mark runs more than ``bound_s`` ahead of the slowest source
        the watermark waits for; an expected source not heard from yet counts as being
        at the stream's beginning. Reading them on would only fill windows the slowest
        holds open: the caller stops reading them until the others catch up or go idle."""
        if not self.begun:
            return set()
        began = min(self.begun.values())
        marks = self.sources.marks
        waiting = [s for s in (self.expected or marks) if s not in self.sources.idle]
        if not waiting:
            return set()
        slowest = min(marks.get(s, began) for s in waiting)
        return {s for s, mark in marks.items() if mark > slowest + bound_s}

    def advance(self, flush: bool = False) -> list[ClosedWindow]:
        """Close every window the watermark has passed.

        ``flush`` is the end of the input: the windows that ended by its newest
        event close too, and any later one, which the input covered only in part,
        is dropped and counted as incomplete. A window that started before the
        stream's first event is closed (its users enter the history) but not
        judged either: the stream began in the middle of it.
        """
        wm = self.watermark
        w = self.window_s
        passed = None if wm is None else int(wm // w) * w  # windows before this have ended
        if flush:
            passed = int(self._newest // w) * w if self._newest > -math.inf else None
        if passed is None:
            return []
        due = {start for start in self.windows if start < passed}
        if self._lapses and self.history and self.closed_until is not None:
            due.update(range(self.closed_until, passed, w))
        # the stream began with its first source's first event: a source heard from
        # later may simply have had nothing to say before (feedback after the
        # first orders), and a source that is late on purpose is the watermark's
        began = min(self.begun.values(), default=-math.inf)
        closed = []
        for start in sorted(due):
            leaves = self.windows.pop(start, {})
            self.seen_ids.pop(start, None)
            self._apply_history(start, leaves)
            if start < began:
                self.stats.incomplete += 1
            elif leaves:
                closed.append(ClosedWindow(start, self._roll_up(leaves)))
            self.closed_until = start + w
        if self.closed_until is None or passed > self.closed_until:
            self.closed_until = passed
        if flush:
            self.stats.incomplete += len(self.windows)
            self.windows.clear()
            self.seen_ids.clear()
        return closed

    def _apply_history(self, start: int, leaves: dict[Leaf, Acc]) -> None:
        """Fill the window's returning and lapsed users, then remember who was active."""
        if not self._history:
            return
        known = {leaf for leaf, _ in self.history}
        for leaf in sorted(known | leaves.keys()):
            acc = leaves.get(leaf)
            for base, slots in self._history.items():
                active = acc.distinct[base] if acc is not None else set()
                hist = self.history.get((leaf, base))
                if hist is None:
                    if not active:
                        continue
                    hist = self.history[(leaf, base)] = History()
                for i, within, lapse in slots:
                    users = (
                        hist.returning(start, within, active)
                        if within
                        else hist.lapsed(start, lapse or 0, active)
                    )
                    if users:
                        if acc is None:
                            acc = leaves[leaf] = Acc.empty(self.catalog)
                        acc.distinct[i] = users
                hist.record(start, active)
                hist.forget_before(start + self.window_s - self._keep[base])
                if not hist.by_window:
                    del self.history[(leaf, base)]

    def _roll_up(self, leaves: Mapping[Leaf, Acc]) -> dict[str, Acc]:
        out: dict[str, Acc] = {}
        for leaf in sorted(leaves):
            acc = leaves[leaf]
            for key in ancestors(leaf):
                target = out.get(key)
                if target is None:
                    out[key] = target = Acc.empty(self.catalog)
                target.merge(acc)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": {
                str(start): [[list(leaf), acc.to_json()] for leaf, acc in leaves.items()]
                for start, leaves in self.windows.items()
            },
            "seen_ids": {str(start): sorted(ids) for start, ids in self.seen_ids.items()},
            "sources": self.sources.to_json(),
            "closed_until": self.closed_until,
            "begun": self.begun,
            "stats": [
                self.stats.applied,
                self.stats.late,
                self.stats.duplicates,
                self.stats.incomplete,
            ],
            "history": [
                [list(leaf), base, hist.to_json()] for (leaf, base), hist in self.history.items()
            ],
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.windows = {
            int(start): {(leaf[0], leaf[1], leaf[2]): Acc.from_json(acc) for leaf, acc in leaves}
            for start, leaves in snap["windows"].items()
        }
        self.seen_ids = {int(s): set(ids) for s, ids in snap["seen_ids"].items()}
        self.sources = Marks.from_json(snap["sources"])
        self._newest = max(self.sources.marks.values(), default=-math.inf)
        self.closed_until = snap["closed_until"]
        # a snapshot from before ``begun`` was kept: its sources had begun long ago
        self.begun = dict(snap.get("begun", dict.fromkeys(self.sources.marks, -math.inf)))
        self.stats = AggregatorStats(*snap["stats"])
        self.history = {
            ((leaf[0], leaf[1], leaf[2]), int(base)): History.from_json(raw)
            for leaf, base, raw in snap["history"]
        }
