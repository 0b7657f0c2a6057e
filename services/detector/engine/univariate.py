"""A univariate detector for a plain series of numbers: contextual anomaly detection.

For metrics that come without a denominator (a CPU reading, a latency, a
price) there is no count model to lean on. This detector learns which values
follow which *contexts* and scores how little of the present it could have
foreseen, after the Contextual Anomaly Detector (CAD OSE, M. Smirnov, 2016),
written anew here. It scores 69.96 on the Numenta Anomaly Benchmark's
standard profile with opswatch's scorer (published for CAD OSE: 69.9).

Each value becomes a handful of *facts*: its level among ``2**value_bits``
over the caller's ``[low, high]`` range, bit ``k`` of the level with value
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

After a score at or above ``alarm`` the next ``rest_period`` steps score 0:
one detection per event, not one per row.

The state is explicit (``init_state``, then ``step(state, value)``) but is
updated in place: the context memory reaches thousands of contexts, and
copying it per value would be far too slow. Given the same values it is
deterministic (hashes of integer tuples do not depend on ``PYTHONHASHSEED``).
"""

from __future__ import annotations

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

    low: float
    level_width: float
    rest_period: int
    resting: int  # rows still to score 0, after a detection
    memory: ContextMemory = field(default_factory=ContextMemory)
    group: Facts = ()
    # left semi-contexts the group has been crossed with: the crossing of one
    # step waits for the next, which knows whether it needs every overlap
    # (novel) or only the semi-contexts wholly inside the group
    left_known: int = 0


@dataclass(frozen=True)
class UnivariateDetector:
    alarm: float = 0.75
    max_partial_left: int = 7
    max_active_neurons: int = 15
    value_bits: int = 3

    def init_state(self, low: float, high: float, rest_period: int) -> SeriesState:
        """A fresh state for values expected within [low, high] (outside: clipped)."""
        if rest_period < 1:
            raise ValueError("rest_period must be at least 1")
        if not low <= high:
            raise ValueError(f"the range [{low}, {high}] is empty")
        levels = 2**self.value_bits - 1
        span = high - low
        # the series starts at rest, so the first rest_period rows are quiet
        width = (span if span else float(levels)) / levels
        return SeriesState(low, width, rest_period, resting=rest_period)

    def encode(self, state: SeriesState, value: float) -> Facts:
        top = 2**self.value_bits - 1
        level = min(max(int((value - state.low) / state.level_width), 0), top)
        return tuple(2 * k + ((level >> k) & 1) for k in range(self.value_bits))

    def step(self, state: SeriesState, value: float) -> float:
        """Learn the value; its anomaly score in [0, 1] (0 while resting after a detection)."""
        raw = self._learn(state, self.encode(state, value))
        quiet = state.resting == 0
        state.resting = state.rest_period if raw >= self.alarm else max(state.resting - 1, 0)
        return raw if quiet else 0.0

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
