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

Distinct users are Theta sketches (see ``users``): a window's partial stays
bounded whatever its user count. The history behind returning and lapsed users
lives here, beside the leaf slice that owns the user's events, as one sketch per
window over the longest horizon the catalog asks for (a day): bounded by that
window count, not by the user base. It is updated as windows close, in window
order: so it too follows from event time alone. When the catalog counts lapsed
users, every window boundary the watermark passes is closed, even one without
events, since users lapse in silence too.

A metric event is a sample of its own series (its name, in the slice its own
dimensions name): never rolled up, it is kept per window as ``Samples`` and
travels in the partial of that slice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from .catalog import Catalog, CountSlot, DistinctSlot, feeds_catalog
from .marks import Marks
from .slices import Leaf, ancestors, slice_of
from .users import Users, union


@lru_cache(maxsize=1 << 16)  # users come back: most events hash a user seen recently
def user_hash(user_id: str) -> int:
    """A stable 63-bit hash of a user id (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest()) >> 1


@dataclass(frozen=True, slots=True)
class Samples:
    """One metric event series' samples in one window, as much as every summary
    needs: their number, sum and maximum, and the last one with its event time.
    Partials from several sources merge: counts and sums add (a sum, as any sum of
    floats, up to rounding in the order added), the maximum is the larger, the
    last is the later (at the same time, the larger value, so the last does not
    depend on the order partials arrive in)."""

    n: int
    total: float
    peak: float
    last: float
    last_ts: float

    @classmethod
    def of(cls, value: float, ts: float) -> Samples:
        return cls(1, value, value, value, ts)

    def merge(self, other: Samples) -> Samples:
        later = other if (other.last_ts, other.last) > (self.last_ts, self.last) else self
        return Samples(
            self.n + other.n,
            self.total + other.total,
            max(self.peak, other.peak),
            later.last,
            later.last_ts,
        )

    def summary(self, how: str) -> float:
        """The window's value of the series: ``last``, ``mean``, ``sum`` or ``max``."""
        if how == "last":
            return self.last
        if how == "max":
            return self.peak
        if how == "sum":
            return self.total
        return self.total / self.n

    def to_json(self) -> list[float]:
        return [self.n, self.total, self.peak, self.last, self.last_ts]

    @classmethod
    def from_json(cls, raw: Sequence[float]) -> Samples:
        n, total, peak, last, last_ts = raw
        return cls(int(n), float(total), float(peak), float(last), float(last_ts))


def merge_samples(mine: dict[str, Samples], theirs: Mapping[str, Samples]) -> None:
    for name, samples in theirs.items():
        have = mine.get(name)
        mine[name] = samples if have is None else have.merge(samples)


@dataclass(slots=True)
class Acc:
    """Mergeable aggregates of one window: numbers per count slot, users per distinct
    slot, and the samples of the metric event series of the slice, by name. The
    series do not add up across slices: a roll-up (``total``) leaves them out."""

    counts: list[float]
    distinct: list[Users]
    series: dict[str, Samples] = field(default_factory=dict)

    @classmethod
    def empty(cls, catalog: Catalog) -> Acc:
        return cls([0.0] * len(catalog.count_slots), [Users() for _ in catalog.distinct_slots])

    @classmethod
    def total(cls, parts: Sequence[Acc]) -> Acc:
        """The sum of one or more aggregates, added in the order given (series left out)."""
        counts = [0.0] * len(parts[0].counts)
        for part in parts:
            for i, value in enumerate(part.counts):
                counts[i] += value
        return cls(
            counts, [union(p.distinct[i] for p in parts) for i in range(len(parts[0].distinct))]
        )

    def measured(self) -> bool:
        """Whether it holds anything of the catalog's metrics: a slice whose partial
        holds metric event samples alone is none of theirs."""
        return not self.series or any(self.counts) or any(self.distinct)

    def merge(self, other: Acc) -> None:
        for i, value in enumerate(other.counts):
            self.counts[i] += value
        for mine, theirs in zip(self.distinct, other.distinct, strict=True):
            mine.merge(theirs)
        merge_samples(self.series, other.series)

    def copy(self) -> Acc:
        return Acc([*self.counts], [users.copy() for users in self.distinct], dict(self.series))

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"c": self.counts, "d": [users.to_json() for users in self.distinct]}
        if self.series:  # most slices have none: their partials stay as they were
            raw["s"] = {name: samples.to_json() for name, samples in self.series.items()}
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], catalog: Catalog) -> Acc:
        """Read back, from this version or one before: a version before had no count of
        the events carrying an optional field, and counted every matching event instead.
        ValueError for counts of another layout (another catalog's)."""
        counts = [float(v) for v in raw["c"]]
        slots = catalog.count_slots
        before = sum(1 for s in slots if s.older is None)  # the layout of a version before
        if len(counts) == before:
            counts += [counts[s.older] for s in slots[before:] if s.older is not None]
        elif len(counts) != len(slots):
            raise ValueError(
                f"{len(counts)} counts where this catalog has {len(slots)} slots"
                f" ({before} in a version before): written with another catalog"
            )
        return cls(
            counts,
            [Users.from_json(u) for u in raw["d"]],
            {name: Samples.from_json(v) for name, v in raw.get("s", {}).items()},
        )


@dataclass(frozen=True)
class ClosedWindow:
    start: int
    partials: dict[str, Acc]  # slice key -> aggregates


@dataclass
class AggregatorStats:
    applied: int = 0
    late: int = 0
    duplicates: int = 0
    incomplete: int = 0  # windows the input ended in the middle of: dropped, never judged


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
class Recent:
    """The users of each window of the last ``span`` seconds, and their union at hand:
    a sliding union over two stacks, about one sketch union per window and query
    whatever the span."""

    span: int
    # oldest last: (start, users, their union with every newer window in this stack)
    front: list[tuple[int, Users, Users]] = field(default_factory=list)
    back: list[tuple[int, Users]] = field(default_factory=list)  # newest last
    back_all: Users = field(default_factory=Users)

    def __bool__(self) -> bool:
        return bool(self.front or self.back)

    def push(self, start: int, users: Users) -> None:
        self.back.append((start, users))
        self.back_all.merge(users)

    def forget(self, now: int) -> None:
        """Drop the windows that started before ``now - span``."""
        cutoff = now - self.span
        while (oldest := self.oldest()) is not None and oldest[0] < cutoff:
            self.front.pop()

    def oldest(self) -> tuple[int, Users, Users] | None:
        if not self.front:
            seen = Users()
            for start, users in reversed(self.back):
                seen = union([seen, users])
                self.front.append((start, users, seen))
            self.back, self.back_all = [], Users()
        return self.front[-1] if self.front else None

    def every(self) -> Users:
        oldest = self.oldest()
        return Users() if oldest is None else union([oldest[2], self.back_all])

    def but_oldest(self) -> Users:
        self.oldest()
        return union([self.front[-2][2], self.back_all]) if len(self.front) > 1 else self.back_all

    def windows(self) -> list[tuple[int, Users]]:
        return [(start, users) for start, users, _ in reversed(self.front)] + self.back


@dataclass
class History:
    """Who was active in each window of one leaf slice (and one predicate), over each
    horizon a history slot looks back (returning within, lapsed after)."""

    horizons: dict[int, Recent]

    @classmethod
    def over(cls, spans: Iterable[int]) -> History:
        return cls({span: Recent(span) for span in spans})

    def __bool__(self) -> bool:
        return any(self.horizons.values())

    def returning(self, start: int, within: int, active: Users) -> Users:
        """The window's users also active in the ``within`` before it."""
        recent = self.horizons[within]
        recent.forget(start)
        return active & recent.every()

    def lapsed(self, start: int, horizon: int, active: Users) -> Users:
        """Users last active exactly ``horizon`` before this window and not in it."""
        recent = self.horizons[horizon]
        recent.forget(start)
        oldest = recent.oldest()
        if oldest is None or oldest[0] != start - horizon:
            return Users()
        return oldest[1] - union([recent.but_oldest(), active])

    def record(self, start: int, active: Users, until: int) -> None:
        """Remember the window's users; forget what no window from ``until`` on needs."""
        if active:
            kept = active.copy()
            for recent in self.horizons.values():
                recent.push(start, kept)
        for recent in self.horizons.values():
            recent.forget(until)

    def to_json(self) -> list[list[Any]]:
        longest = self.horizons[max(self.horizons)]
        return [[t, users.to_json()] for t, users in longest.windows()]

    @classmethod
    def from_json(cls, raw: list[list[Any]], spans: Iterable[int]) -> History:
        hist = cls.over(spans)
        for t, users in raw:
            kept = Users.from_json(users)
            for recent in hist.horizons.values():
                recent.push(int(t), kept)
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
    # per window, the samples of the metric event series: slice key -> name -> samples
    series: dict[int, dict[str, dict[str, Samples]]] = field(default_factory=dict)
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
        self._spans = {
            base: {within or lapse or 0 for _, within, lapse in hs}
            for base, hs in self._history.items()
        }
        self._lapses = any(lapse for hs in self._history.values() for _, _, lapse in hs)
        self._newest = -math.inf  # the newest event time of any source: bounds the watermark

    def add(self, event: Mapping[str, Any], ts: float, leaf: Leaf, source: str = "") -> bool:
        """Apply one event that keeps the contract (``validate``); False when it is late or
        a duplicate. Nothing of it can fail half applied: what it is read for here is
        what the contract requires of every event, and the catalog's measures read only
        what the contract gives their event types (an optional field may be missing)."""
        event_id, etype = event["event_id"], event["type"]
        self.sources.advance(source, ts)
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
        if event_id in ids:
            self.stats.duplicates += 1
            return False
        ids.add(event_id)
        if ts < self.begun.get(source, math.inf):  # its earliest event taken, in any order
            self.begun[source] = ts
        if not feeds_catalog(etype):  # a sample of its own series, in its own slice
            names = self.series.setdefault(start, {}).setdefault(slice_of(event), {})
            merge_samples(names, {event["name"]: Samples.of(float(event["value"]), ts)})
            self.stats.applied += 1
            return True
        leaves = self.windows.setdefault(start, {})
        acc = leaves.get(leaf)
        if acc is None:
            acc = leaves[leaf] = Acc.empty(self.catalog)
        counts = acc.counts
        for plan in (self._counts.get(etype), self._counts.get(None)):
            for i, slot in plan or ():
                if _matches(slot, event):
                    if slot.field is None:
                        counts[i] += 1.0
                    elif (value := event.get(slot.field)) is not None:  # optional: maybe not
                        counts[i] += float(value) ** slot.power
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
        began = self.began
        if began is None:
            return set()
        marks = self.sources.marks
        waiting = [
            s for s in self.sources.heard_or(self.expected or None) if s not in self.sources.idle
        ]
        if not waiting:
            return set()
        slowest = min(marks.get(s, began) for s in waiting)
        return {s for s, mark in marks.items() if mark > slowest + bound_s}

    @property
    def began(self) -> float | None:
        """When the stream began: the earliest event taken of any source (a source
        heard from later may simply have had nothing to say before: feedback after
        the first orders; and a source that is late on purpose is the watermark's);
        -inf: long ago (a snapshot from before this was kept)."""
        return min(self.begun.values(), default=None)

    def advance(self, flush: bool = False) -> list[ClosedWindow]:
        """Close every window the watermark has passed.

        ``flush`` is the end of the input: the windows that ended by its newest
        event close too, and any later one, which the input covered only in part,
        is dropped and counted as incomplete. A window that started before the
        stream's first event is closed as any: whether the stream began in the
        middle of it is the evaluator's to tell, from the beginnings of all the
        partitions that feed it.
        """
        wm = self.watermark
        w = self.window_s
        passed = None if wm is None else int(wm // w) * w  # windows before this have ended
        if flush:
            passed = int(self._newest // w) * w if self._newest > -math.inf else None
        if passed is None:
            return []
        due = {start for start in (*self.windows, *self.series) if start < passed}
        if self._lapses and self.history and self.closed_until is not None:
            due.update(range(self.closed_until, passed, w))
        closed = []
        for start in sorted(due):
            leaves = self.windows.pop(start, {})
            series = self.series.pop(start, {})
            self.seen_ids.pop(start, None)
            self._apply_history(start, leaves)
            if leaves or series:
                partials = self._roll_up(leaves)
                for key, samples in series.items():
                    partials.setdefault(key, Acc.empty(self.catalog)).series = samples
                closed.append(ClosedWindow(start, partials))
            self.closed_until = start + w
        if self.closed_until is None or passed > self.closed_until:
            self.closed_until = passed
        if flush:
            self.stats.incomplete += len(self.windows.keys() | self.series.keys())
            self.windows.clear()
            self.series.clear()
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
                active = acc.distinct[base] if acc is not None else Users()
                hist = self.history.get((leaf, base))
                if hist is None:
                    if not active:
                        continue
                    hist = self.history[(leaf, base)] = History.over(self._spans[base])
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
                hist.record(start, active, start + self.window_s)
                if not hist:
                    del self.history[(leaf, base)]

    def _roll_up(self, leaves: Mapping[Leaf, Acc]) -> dict[str, Acc]:
        members: dict[str, list[Acc]] = {}
        for leaf in sorted(leaves):
            for key in ancestors(leaf):
                members.setdefault(key, []).append(leaves[leaf])
        return {key: Acc.total(accs) for key, accs in members.items()}

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
            "series": {
                str(start): {
                    key: {name: samples.to_json() for name, samples in names.items()}
                    for key, names in keys.items()
                }
                for start, keys in self.series.items()
            },
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.windows = {
            int(start): {
                (leaf[0], leaf[1], leaf[2]): Acc.from_json(acc, self.catalog)
                for leaf, acc in leaves
            }
            for start, leaves in snap["windows"].items()
        }
        self.seen_ids = {int(s): set(ids) for s, ids in snap["seen_ids"].items()}
        self.sources = Marks.from_json(snap["sources"])
        self._newest = max(self.sources.marks.values(), default=-math.inf)
        self.closed_until = snap["closed_until"]
        # a snapshot from before ``begun`` was kept: its sources had begun long ago
        # (written as null by JSON)
        begun = snap.get("begun", dict.fromkeys(self.sources.marks))
        self.begun = {s: -math.inf if t is None else t for s, t in begun.items()}
        self.stats = AggregatorStats(*snap["stats"])
        self.history = {
            ((leaf[0], leaf[1], leaf[2]), int(base)): History.from_json(raw, self._spans[int(base)])
            for leaf, base, raw in snap["history"]
        }
        self.series = {  # a snapshot from before metric series were judged: none
            int(start): {
                key: {name: Samples.from_json(v) for name, v in names.items()}
                for key, names in keys.items()
            }
            for start, keys in snap.get("series", {}).items()
        }
