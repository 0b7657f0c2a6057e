"""High-water marks of several sources, some of which may have gone quiet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Marks:
    """Each source's mark only moves forward; the slowest source that is not idle
    bounds what every source has passed. Whether a source is idle is the
    caller's (wall-clock) judgement; a source's next mark makes it count again."""

    marks: dict[str, float] = field(default_factory=dict)
    idle: set[str] = field(default_factory=set)

    def advance(self, source: str, mark: float) -> None:
        self.idle.discard(source)
        if mark > self.marks.get(source, float("-inf")):
            self.marks[source] = mark

    def mark_idle(self, source: str) -> None:
        self.idle.add(source)

    def hear(self, source: str) -> None:
        """The source is still there, with no new mark: it counts again."""
        self.idle.discard(source)

    def low(self, expected: Iterable[str] | None = None) -> float | None:
        """The mark every non-idle source (of ``expected`` and those seen) has passed."""
        if not self.marks:
            return None
        sources = self.heard_or(expected)
        waiting = [s for s in sources if s not in self.idle]
        if any(s not in self.marks for s in waiting):
            return None
        return min(self.marks[s] for s in waiting) if waiting else max(self.marks.values())

    def heard_or(self, expected: Iterable[str] | None) -> list[str]:
        """The sources ``expected`` (waited for before they are heard from), and every
        other source once heard from."""
        if expected is None:
            return list(self.marks)
        first = list(expected)
        return first + [s for s in self.marks if s not in first]

    def to_json(self) -> dict[str, Any]:
        return {"marks": self.marks, "idle": sorted(self.idle)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Marks:
        return cls(dict(raw["marks"]), set(raw["idle"]))
