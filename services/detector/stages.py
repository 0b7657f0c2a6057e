"""The detector's stages as plain objects, one per Kafka partition.

Stage one owns a partition of the event topics: it windows the events of the
leaf slices keyed there and, as its watermark passes window ends, publishes the
partial aggregates of every slice those leaves feed, keyed by slice, and then
a watermark marker to every partition of the partials topic. Stage two owns a
partition of the partials topic: it merges the partials of the slices keyed
there and judges a window once the markers of all source partitions have
passed it, and sends a report of what looks anomalous to stage three, which
sees every slice (a one-partition topic: only candidates travel on it) and
decides the alerts. The Faust app only moves bytes between these and Kafka,
which is what lets them be tested without a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.detector.engine.aggregate import Acc, Aggregator
from services.detector.engine.catalog import Catalog
from services.detector.engine.evaluate import EngineSettings, Evaluator, Report
from services.detector.engine.explain import AlertBook


@dataclass(frozen=True)
class Outgoing:
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass
class StageOne:
    partition: int
    catalog: Catalog
    settings: EngineSettings
    partials_partitions: int
    aggregator: Aggregator = field(init=False)
    marked: int | None = None  # last window boundary announced to stage two

    def __post_init__(self) -> None:
        s = self.settings
        self.aggregator = Aggregator(self.catalog, s.window_s, s.lateness_s)

    def on_event(
        self, event: Mapping[str, Any], ts: float, leaf: tuple[str, str, str], source: str
    ) -> list[Outgoing]:
        self.aggregator.add(event, ts, leaf, source)
        return self.emit()

    def emit(self) -> list[Outgoing]:
        closed = self.aggregator.advance()
        wm = self.aggregator.watermark
        if wm is None:
            return []
        boundary = int(wm // self.settings.window_s) * self.settings.window_s
        if not closed and self.marked is not None and boundary <= self.marked:
            return []
        out = [
            Outgoing(
                key.encode(),
                orjson.dumps(
                    {"k": "p", "w": w.start, "s": key, "src": self.partition, "a": acc.to_json()}
                ),
            )
            for w in closed
            for key, acc in w.partials.items()
        ]
        marker = orjson.dumps({"k": "wm", "src": self.partition, "wm": wm})
        out.extend(Outgoing(None, marker, q) for q in range(self.partials_partitions))
        self.marked = boundary
        return out

    def mark_idle(self, source: str) -> list[Outgoing]:
        self.aggregator.mark_idle(source)
        return self.emit()

    def snapshot(self) -> bytes:
        return orjson.dumps({"agg": self.aggregator.snapshot(), "marked": self.marked})

    def restore(self, raw: bytes) -> None:
        snap = orjson.loads(raw)
        self.aggregator.restore(snap["agg"])
        self.marked = snap["marked"]


@dataclass
class StageTwo:
    partition: int
    catalog: Catalog
    settings: EngineSettings
    source_partitions: int
    evaluator: Evaluator = field(init=False)
    last_source: str = ""  # the source partition of the last message

    def __post_init__(self) -> None:
        sources = tuple(str(p) for p in range(self.source_partitions))
        self.evaluator = Evaluator(self.catalog, self.settings, sources)

    def on_message(self, value: bytes) -> list[bytes]:
        """A partial or a watermark in; window reports for stage three out."""
        msg = orjson.loads(value)
        self.last_source = str(msg["src"])
        if msg["k"] == "p":
            self.evaluator.add_partial(msg["w"], msg["s"], Acc.from_json(msg["a"]))
            return []
        return self._encode(self.evaluator.advance(str(msg["src"]), msg["wm"]))

    def mark_idle(self, source: int) -> list[bytes]:
        return self._encode(self.evaluator.mark_idle(str(source)))

    def _encode(self, reports: list[Report]) -> list[bytes]:
        return [orjson.dumps({"src": self.partition, **r.to_json()}) for r in reports]

    def snapshot(self) -> bytes:
        return orjson.dumps(self.evaluator.snapshot())

    def restore(self, raw: bytes) -> None:
        self.evaluator.restore(orjson.loads(raw))


@dataclass
class StageThree:
    """Owns the whole reports topic (one partition: only candidates travel on it)."""

    catalog: Catalog
    settings: EngineSettings
    source_partitions: int
    book: AlertBook = field(init=False)
    last_source: str = ""

    def __post_init__(self) -> None:
        sources = tuple(str(p) for p in range(self.source_partitions))
        self.book = AlertBook(self.settings, sources, self.catalog.version)

    def on_message(self, value: bytes) -> list[dict[str, Any]]:
        msg = orjson.loads(value)
        self.last_source = str(msg["src"])
        return self.book.add(self.last_source, Report.from_json(msg))

    def mark_idle(self, source: int) -> list[dict[str, Any]]:
        return self.book.mark_idle(str(source))

    def snapshot(self) -> bytes:
        return orjson.dumps(self.book.snapshot())

    def restore(self, raw: bytes) -> None:
        self.book.restore(orjson.loads(raw))
