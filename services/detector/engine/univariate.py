"""A univariate detector for a plain series of numbers: contextual anomaly detection.

For metrics that come without a denominator (a CPU reading, a latency, a
price) there is no count model to lean on. This detector learns which values
follow which *contexts* and scores how little of the present it could have
foreseen, after the Contextual Anomaly Detector (CAD OSE, M. Smirnov, 2016),
written anew here, with a leap beyond the values seen so far scoring 1 (as
NAB's runner for Numenta's HTM flags a "spatial anomaly"). Given each file's
range in advance, as NAB's runner gives it, it scores 71.37 on the Numenta
Anomaly Benchmark's standard profile with opswatch's scorer (published for
CAD OSE: 69.9); learning the range as it goes, as production runs it, 72.45
(see docs/evaluation.md).

Each value becomes a handful of *facts*: its level among ``2**value_bits``
over the ``[low, high]`` range, bit ``k`` of the level with value
``b`` the fact ``2k + b``; and each context active on the previous step is a
fact too (``NEURON_BASE + id``, at most ``max_active_neurons`` of them). A
context is a pair (left facts, right facts): "after these facts, these
followed". With ``sensed`` the current sensor facts and ``group`` the
previous step's facts, one step:

1. looks up the *episode* context (``group``, ``sensed``), creating it if new;
   a new one makes the step *novel*;
2. selects every stored context whose left side lies wholly inside ``group``;
   one is *active* when its right side lies wholly inside ``sensed`` too;
3. on a novel step, lets every episode context that took part without being
   active, whose left side shares facts with ``group`` and right side with
   ``sensed``, propose the shared facts as a new *candidate* context (at most
   ``max_partial_left`` left facts);
4. scores ``(1 - active/selected + added/distinct) / 2``: the share of the
   expected that did not come, and on a novel step the share of the
   candidates (with the episode) that were really new;
5. makes the strongest active contexts (most activations) the next step's
   neuron facts.

A value beyond the range of the values seen so far (not the encoding's
range, which may be given) by more than ``leap_share`` of its span scores 1,
whatever the contexts foresaw (a new minimum shares the bottom level with
the values just above it, and within a given range a new extreme may share
a level with values seen often: the contexts may foresee either). A score
at or above ``alarm`` outside a rest is a detection, and the next
``rest_period`` steps score 0 whatever they would score (without one:
``rest_share`` of the values seen so far, at most ``max_rest``): one
detection per event, not one per row, and an event that goes on past the
rest is detected again.

Unless the caller gives the range, it is learned causally: the first value
sets it, and a value outside it widens it to the values seen so far (plus
``margin`` of their span on each side) and *re-encodes*: the context memory
is rebuilt by learning the last ``recent`` values again in the new encoding,
so the new extreme is judged against what came before, in the levels it
would have had. A new extreme that widens the span seen by less than
``nudge`` of it (a series creeping up, say) scores ``nudge_damping`` of its
surprise: a new maximum lands in a level of its own that the rebuilt memory
never saw, so a hair beyond the range would otherwise score like a leap. A
memory past ``max_contexts`` contexts is rebuilt the same way (from fewer
values, if the recent ones alone would fill half of it). The
state of a series is bounded: at most ``recent`` values, and a memory of at
most ``max_contexts`` contexts before a step and twice that plus one after it
(a step adds at most one context per context it holds, and the episode), each
context at most ``value_bits`` + ``max_active_neurons`` facts a side; nothing
else grows with the series.

The state is explicit (``init_state``, then ``step(state, value)``) but is
updated in place: the context memory reaches thousands of contexts, and
copying it per value would be far too slow. Given the same values it is
deterministic (hashes of integer tuples do not depend on ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

NEURON_BASE = 2**31
Facts = tuple[int, ...]
Candidate = tuple[Facts, Facts]


@dataclass(slots=True)
class _Context:
    left_hash: int
    right_hash: int
    episode: bool
    activations: int = 0


@dataclass
class _Side:
    """The semi-contexts of one side, with two indexes over their facts.

    ``index`` maps a fact to every semi-context holding it (to find those that
    overlap a fact set); ``anchors`` maps a fact to the semi-contexts whose
    largest fact it is (to find those wholly inside a fact set, a far smaller
    search).
    """

    ids: dict[Facts, int] = field(default_factory=dict)
    facts: list[Facts] = field(default_factory=list)
    index: dict[int, list[int]] = field(default_factory=dict)
    anchors: dict[int, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.facts)

    def intern(self, facts: Facts) -> int:
        ident = self.ids.get(facts)
        if ident is None:
            ident = len(self.facts)
            self.ids[facts] = ident
            self.facts.append(facts)
            for fact in facts:
                self.index.setdefault(fact, []).append(ident)
            self.anchors.setdefault(facts[-1], []).append(ident)
        return ident

    def overlapping(self, facts: Facts, below: int) -> dict[int, Facts]:
        """Id -> the given facts it holds, for semi-contexts (ids < below) holding any."""
        matched: dict[int, list[int]] = {}
        for fact in facts:  # facts are sorted, so every matched list is too
            for ident in self.index.get(fact, ()):
                if ident < below:
                    matched.setdefault(ident, []).append(fact)
        return {ident: tuple(found) for ident, found in matched.items()}

    def inside(self, facts: Facts, below: int) -> dict[int, Facts]:
        """Id -> its facts, for semi-contexts (ids < below) wholly inside the given facts."""
        present = set(facts)
        found: dict[int, Facts] = {}
        for fact in facts:
            for ident in self.anchors.get(fact, ()):
                own = self.facts[ident]
                if ident < below and present.issuperset(own):
                    found[ident] = own
        return found


class ContextMemory:
    def __init__(self) -> None:
        self.left = _Side()
        self.right = _Side()
        self.links: list[dict[int, int]] = []  # left id -> {right id: context id}
        self.contexts: list[_Context] = []

    def _find_or_add(self, left: Facts, right: Facts, episode: bool) -> tuple[int, bool]:
        left_id = self.left.intern(left)
        if left_id == len(self.links):
            self.links.append({})
        right_id = self.right.intern(right)
        links = self.links[left_id]
        known = links.get(right_id)
        if known is not None:
            return known, False
        ident = len(self.contexts)
        links[right_id] = ident
        self.contexts.append(_Context(hash(left), hash(right), episode))
        return ident, True

    def add_episode(self, left: Facts, right: Facts) -> int | None:
        """Store the context; its id when it is new, else None (and flag it an episode)."""
        ident, new = self._find_or_add(left, right, episode=True)
        if not new:
            self.contexts[ident].episode = True
            return None
        return ident

    def add_candidates(self, candidates: list[Candidate]) -> int:
        return sum(self._find_or_add(left, right, episode=False)[1] for left, right in candidates)


@dataclass(frozen=True)
class _Review:
    active: list[int]  # context ids
    selected: int
    candidates: list[Candidate]


@dataclass
class SeriesState:
    """What the detector has learned of one series."""

    rest_period: int | None  # rows at rest after a detection; None: a share of the rows seen
    resting: int  # rows still to score 0, after a detection
    fixed: bool  # the range was given: values beyond it are clipped, never re-encoded
    low: float = 0.0  # the encoding: level k holds [low + k width, low + (k + 1) width)
    level_width: float = 1.0
    high: float = 0.0  # values above high or below low re-encode the series, unless fixed
    seen_low: float = math.inf  # the range of the values seen so far
    seen_high: float = -math.inf
    memory: ContextMemory = field(default_factory=ContextMemory)
    group: Facts = ()
    # left semi-contexts the group has been crossed with: the crossing of one
    # step waits for the next, which knows whether it needs every overlap
    # (novel) or only the semi-contexts wholly inside the group
    left_known: int = 0
    recent: deque[float] = field(default_factory=deque)  # the last values, to relearn
    seen: int = 0  # values stepped
    rebuilds: int = 0  # times the context memory was rebuilt from the recent values


@dataclass(frozen=True)
class UnivariateDetector:
    alarm: float = 0.75
    max_partial_left: int = 7
    max_active_neurons: int = 15
    value_bits: int = 3
    margin: float = 0.0  # share of the seen span added on each side when re-encoding
    recent: int = 750  # values kept to relearn from on a re-encoding or a rebase
    max_contexts: int = 100_000  # a larger memory is rebuilt from the recent values
    rest_share: float = 0.03  # without a rest period: rest this share of the rows seen
    max_rest: int = 150  # ... at most
    nudge: float = 0.05  # a new extreme widening the span seen by less than this share of it
    nudge_damping: float = 0.9  # ... scores this much of its surprise
    leap_share: float = 0.01  # a value beyond the range seen by more than this share of it scores 1

    def init_state(
        self, rest_period: int | None = None, low: float | None = None, high: float | None = None
    ) -> SeriesState:
        """A fresh state. Values are expected within [low, high] (beyond: clipped)
        when given, else the range is learned from the values as they come. After a
        detection the series rests ``rest_period`` rows when given, else
        ``rest_share`` of the rows seen so far (at most ``max_rest``)."""
        if rest_period is not None and rest_period < 1:
            raise ValueError("rest_period must be at least 1")
        if (low is None) != (high is None):
            raise ValueError("give both ends of the range, or neither")
        # the series starts at rest, so its first rows are quiet
        start = self.max_rest if rest_period is None else rest_period
        if low is None or high is None:
            return SeriesState(rest_period, resting=start, fixed=False)
        if not low <= high:
            raise ValueError(f"the range [{low}, {high}] is empty")
        state = SeriesState(rest_period, resting=start, fixed=True)
        self._set_range(state, low, high)
        return state

    def _set_range(self, state: SeriesState, low: float, high: float) -> None:
        levels = 2**self.value_bits - 1
        span = high - low
        state.low, state.high = low, high
        state.level_width = (span if span else float(levels)) / levels

    def encode(self, state: SeriesState, value: float) -> Facts:
        top = 2**self.value_bits - 1
        level = min(max(int((value - state.low) / state.level_width), 0), top)
        return tuple(2 * k + ((level >> k) & 1) for k in range(self.value_bits))

    def step(self, state: SeriesState, value: float) -> float:
        """Learn the value; its anomaly score in [0, 1]: 1 when it leaps beyond
        the values seen so far, else its surprise; 0 while resting after a detection."""
        leap = self.leaps(state, value)
        raw = self.surprise(state, value)
        if leap:
            raw = 1.0
        if state.resting:
            state.resting -= 1
            return 0.0
        if raw >= self.alarm:
            if state.rest_period is not None:
                state.resting = state.rest_period
            else:
                state.resting = max(1, min(int(self.rest_share * (state.seen - 1)), self.max_rest))
        return raw

    def leaps(self, state: SeriesState, value: float) -> bool:
        """Whether the value lies beyond the range of the values seen so far by
        more than ``leap_share`` of that range's span (never before the span is
        more than a point)."""
        span = state.seen_high - state.seen_low
        if not span > 0:
            return False
        beyond = max(value - state.seen_high, state.seen_low - value)
        return beyond > self.leap_share * span

    def surprise(self, state: SeriesState, value: float) -> float:
        """Learn the value; how little of it the contexts foresaw, in [0, 1]."""
        damping = 1.0
        before = state.seen_high - state.seen_low
        state.seen_low = min(state.seen_low, value)
        state.seen_high = max(state.seen_high, value)
        if not state.fixed and (not state.seen or not state.low <= value <= state.high):
            span = state.seen_high - state.seen_low
            if state.seen and span - before < self.nudge * span:
                damping = self.nudge_damping
            pad = self.margin * span
            self._set_range(state, state.seen_low - pad, state.seen_high + pad)
            self._relearn(state)
        elif len(state.memory.contexts) > self.max_contexts:
            self._relearn(state)
        raw = damping * self._learn(state, self.encode(state, value))
        state.seen += 1
        state.recent.append(value)
        if len(state.recent) > self.recent:
            state.recent.popleft()
        return raw

    def _relearn(self, state: SeriesState) -> None:
        """A fresh context memory, taught the recent values in the present encoding:
        the last half of them, quarter, ... while it would fill half of max_contexts."""
        state.rebuilds += 1
        count = len(state.recent)
        while True:
            state.memory, state.group, state.left_known = ContextMemory(), (), 0
            for value in list(state.recent)[len(state.recent) - count :]:
                self._learn(state, self.encode(state, value))
            if count <= 1 or len(state.memory.contexts) <= self.max_contexts // 2:
                return
            count //= 2

    def _learn(self, state: SeriesState, sensed: Facts) -> float:
        memory = state.memory
        fresh: int | None = None
        distinct: set[Candidate] = set()
        if state.group:
            distinct.add((state.group, sensed))
            fresh = memory.add_episode(state.group, sensed)
        novel = fresh is not None
        # The original compares context ids with a "no new context" value of
        # False, which equals 0: context 0 is passed over on steps that are not
        # novel. Kept, as the published scores come from it.
        skipped = 0 if fresh is None else fresh
        left = memory.left
        if novel:
            left_match = left.overlapping(state.group, state.left_known)
        else:
            left_match = left.inside(state.group, state.left_known)
        right_match = memory.right.overlapping(sensed, len(memory.right))
        review = self._review(memory, left_match, right_match, skipped, novel)
        distinct.update(review.candidates)
        active_share = len(review.active) / review.selected if review.selected else 0.0
        neurons = self._strongest(memory, review.active)
        state.group = tuple(sorted({*sensed, *(NEURON_BASE + c for c in neurons)}))
        added = memory.add_candidates(review.candidates) + (1 if novel else 0)
        state.left_known = len(left)
        added_share = added / len(distinct) if novel and distinct else 0.0
        return (1.0 - active_share + added_share) / 2.0

    def _review(
        self,
        memory: ContextMemory,
        left_match: dict[int, Facts],
        right_match: dict[int, Facts],
        skipped: int,
        novel: bool,
    ) -> _Review:
        """Select, confirm and activate contexts; on a novel step, gather candidates."""
        left_facts_of, right_facts_of = memory.left.facts, memory.right.facts
        links, contexts = memory.links, memory.contexts
        active: list[int] = []
        candidates: list[Candidate] = []
        selected = 0
        for left_id in sorted(left_match):  # creation order
            left_facts = left_match[left_id]
            whole_left = len(left_facts) == len(left_facts_of[left_id])
            for right_id, ident in links[left_id].items():
                if ident == skipped:
                    continue
                context = contexts[ident]
                right_facts = right_match.get(right_id)
                if whole_left:
                    selected += 1
                    if right_facts is None:
                        continue
                    if len(right_facts) == len(right_facts_of[right_id]):
                        context.activations += 1
                        active.append(ident)
                        continue
                elif right_facts is None:
                    continue
                if context.episode and novel and len(left_facts) <= self.max_partial_left:
                    candidates.append((left_facts, right_facts))
        return _Review(active, selected, candidates)

    def _strongest(self, memory: ContextMemory, active: list[int]) -> list[int]:
        """The most often activated contexts (ties: by the hashes of their fact tuples)."""
        contexts = memory.contexts

        def rank(ident: int) -> tuple[int, int, int]:
            c = contexts[ident]
            return (c.activations, c.left_hash, c.right_hash)

        count = self.max_active_neurons
        return sorted(active, key=rank)[-count:] if count > 0 else []
