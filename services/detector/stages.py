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

Processing is at-least-once, so every stage may see a record twice: a record
redelivered after a crash or a rebalance is recognised by its input position
(``Positions``, kept in the stage's snapshot), and an output sent twice by an
upstream stage that replayed its input is recognised by what it is (a slice's
partial of a window from one source; a source's report of a window), so
neither is applied twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.common.events import MetricNames, event_time, leaf_of
from services.common.kafka import slot
from services.detector.engine.aggregate import Acc, Aggregator, ClosedWindow
from services.detector.engine.calendar import Calendar
from services.detector.engine.catalog import Catalog, feeds_catalog
from services.detector.engine.evaluate import EngineSettings, Evaluator, Report
from services.detector.engine.explain import AlertBook
from services.detector.engine.members import Members, decode, encode

PARTIALS_BYTES = 256 * 1024  # of one record of partials: well under a broker's 1 MB


@dataclass(frozen=True)
class Outgoing:
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass
class Positions:
    """The offset of the last record applied, per input topic (of one partition)."""

    last: dict[str, int] = field(default_factory=dict)

    def applied(self, topic: str, offset: int) -> bool:
        """Whether the record was applied before (it is being redelivered)."""
        return offset <= self.last.get(topic, -1)

    def advance(self, topic: str, offset: int) -> None:
        self.last[topic] = max(offset, self.last.get(topic, -1))

    def next(self, topic: str) -> int:
        """The offset to read from to continue (0: nothing of the topic applied yet)."""
        return self.last.get(topic, -1) + 1


@dataclass
class StageOne:
    partition: int
    catalog: Catalog
    settings: EngineSettings
    partials_partitions: int
    sources: tuple[str, ...] = ()  # the event topics (none: those heard from)
    source_types: Mapping[str, str] = field(default_factory=dict)  # topic -> its event type
    aggregator: Aggregator = field(init=False)
    marked: int | None = None  # last window boundary announced to stage two
    # per idle topic, the event time up to which the caller vouches for its silence
    # (the stream is live: nothing was said), beyond its last event
    quiet_until: dict[str, float] = field(default_factory=dict)
    positions: Positions = field(default_factory=Positions)
    metric_names: MetricNames = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        # the watermark waits for the catalog's topics from the start; the metric
        # events' topic counts once heard from, so that nobody writing it holds nothing back
        waited = tuple(t for t in self.sources if feeds_catalog(self.source_types.get(t, "*")))
        self.aggregator = Aggregator(self.catalog, s.window_s, s.lateness_s, expected=waited)
        self.metric_names = MetricNames(s.max_metric_names, frozenset(self.catalog.names))

    def on_event(
        self, event: Mapping[str, Any], ts: float, leaf: tuple[str, str, str], source: str
    ) -> list[Outgoing]:
        self.metric_names.admit(event)
        self.aggregator.add(event, ts, leaf, source)
        return self.emit()

    def on_events(
        self, events: Sequence[Mapping[str, Any]], source: str | Sequence[str]
    ) -> tuple[list[Outgoing], list[tuple[Mapping[str, Any], Exception]]]:
        """Valid events in order, each of ``source`` (one source for all, or one per
        event: records of several topics as they were read), then what the windows
        they close send: the same as one event at a time (lateness follows from
        event time and the watermark of the events added so far), with one watermark
        marker instead of many. And the events the engine refused (a metric event of
        a name beyond ``max_metric_names``: an EventError)."""
        sources = [source] * len(events) if isinstance(source, str) else source
        refused: list[tuple[Mapping[str, Any], Exception]] = []
        add, admit = self.aggregator.add, self.metric_names.admit
        for event, of in zip(events, sources, strict=True):
            try:
                admit(event)
                add(event, event_time(event), leaf_of(event), of)
            except Exception as exc:  # an event the engine cannot take: kept, not fatal
                refused.append((event, exc))
        return self.emit(), refused

    def emit(self) -> list[Outgoing]:
        closed = self.aggregator.advance()
        wm = self.aggregator.watermark
        if wm is None:
            return []
        boundary = int(wm // self.settings.window_s) * self.settings.window_s
        if not closed and self.marked is not None and boundary <= self.marked:
            return []
        out = [o for w in closed for o in self._partials(w)]
        began = self.aggregator.began
        marker = orjson.dumps(
            {"k": "wm", "src": self.partition, "wm": wm, "b": began, **self._idle()}
        )
        out.extend(Outgoing(None, marker, q) for q in range(self.partials_partitions))
        self.marked = boundary
        return out

    def _idle(self) -> dict[str, Any]:
        """The event types of the idle topics, each with its topic's last event time
        (None: never heard from): the windows this marker closes that ended after it
        were closed without that type's events. An unknown topic stands for any type."""
        sources = self.aggregator.sources
        if not sources.idle:
            return {}
        covered = {}
        for s in sorted(sources.idle):
            if not feeds_catalog(self.source_types.get(s, "*")):
                continue  # no catalog metric reads it: its silence leaves none unjudged
            known = [t for t in (sources.marks.get(s), self.quiet_until.get(s)) if t is not None]
            covered[self.source_types.get(s, "*")] = max(known, default=None)
        return {"idle": covered} if covered else {}

    def _partials(self, window: ClosedWindow) -> list[Outgoing]:
        """A closed window's partials, as few records as fit: per partials partition
        (the one each slice's key goes to), up to PARTIALS_BYTES each."""
        head = b'{"k":"pb","w":%d,"src":%d,"a":{' % (window.start, self.partition)
        by_partition: dict[int, list[bytes]] = {}
        for key, acc in window.partials.items():
            item = orjson.dumps(key) + b":" + orjson.dumps(acc.to_json())
            by_partition.setdefault(slot(key.encode(), self.partials_partitions), []).append(item)
        out = []
        for q, items in sorted(by_partition.items()):
            start, size = 0, 0
            for end, item in enumerate(items):
                if end > start and size + len(item) > PARTIALS_BYTES:
                    out.append(Outgoing(None, head + b",".join(items[start:end]) + b"}}", q))
                    start, size = end, 0
                size += len(item) + 1
            out.append(Outgoing(None, head + b",".join(items[start:]) + b"}}", q))
        return out

    def heartbeat(self) -> list[Outgoing]:
        """To every partials partition: this partition has more to say (records left,
        topics held back by the alignment, a topic not idle yet), so it holds their
        windows open however long it sends no watermark."""
        beat = orjson.dumps({"k": "hb", "src": self.partition})
        return [Outgoing(None, beat, q) for q in range(self.partials_partitions)]

    def mark_idle(self, source: str, quiet_until: float | None = None) -> list[Outgoing]:
        """The topic has gone quiet; ``quiet_until``: the event time up to which it
        had nothing to say (the stream is live), or None (a backfill: its silence says
        nothing of the windows after its last event, which stage two leaves unjudged
        for the metrics that read it)."""
        self.aggregator.mark_idle(source)
        self.vouch(source, quiet_until)
        return self.emit()

    def vouch(self, source: str, quiet_until: float | None) -> None:
        if quiet_until is None:
            self.quiet_until.pop(source, None)
        else:
            self.quiet_until[source] = quiet_until

    def snapshot(self) -> Iterator[bytes]:
        return encode(
            {
                "agg": self.aggregator.snapshot(),
                "marked": self.marked,
                "pos": self.positions.last,
                "quiet": self.quiet_until,
                "names": sorted(self.metric_names.names),
            }
        )

    def restore(self, pieces: Iterable[bytes]) -> None:
        snap = decode(pieces)
        self.aggregator.restore(snap["agg"])
        self.marked = snap["marked"]
        self.positions = Positions(snap["pos"])
        self.quiet_until = dict(snap.get("quiet", {}))
        self.metric_names.names = set(snap.get("names", ()))


@dataclass
class StageTwo:
    partition: int
    catalog: Catalog
    settings: EngineSettings
    source_partitions: int
    calendar: Calendar = field(default_factory=Calendar)
    evaluator: Evaluator = field(init=False)
    last_source: str = ""  # the source partition of the last message
    positions: Positions = field(default_factory=Positions)
    # the slices each source sent a partial of, per window not judged yet
    received: dict[int, dict[str, set[str]]] = field(default_factory=dict)
    duplicates: int = 0  # partials received twice, dropped

    def __post_init__(self) -> None:
        sources = tuple(str(p) for p in range(self.source_partitions))
        self.evaluator = Evaluator(self.catalog, self.settings, sources, calendar=self.calendar)

    def on_message(self, value: bytes) -> list[bytes]:
        """A partial or a watermark in; window reports for stage three out."""
        msg = orjson.loads(value)
        source = self.last_source = str(msg["src"])
        if msg["k"] in ("p", "pb"):  # one slice's partial (before batches), or a batch
            partials = {msg["s"]: msg["a"]} if msg["k"] == "p" else msg["a"]
            sent = self.received.setdefault(msg["w"], {}).setdefault(source, set())
            for key, acc in partials.items():
                if key in sent:
                    self.duplicates += 1
                else:
                    sent.add(key)
                    self.evaluator.add_partial(msg["w"], key, Acc.from_json(acc, self.catalog))
            return []
        if msg["k"] == "hb":  # the source partition has more to say: so has this one
            self.evaluator.marks.hear(source)
            return [orjson.dumps({"k": "hb", "src": self.partition})]
        return self._encode(
            self.evaluator.advance(source, msg["wm"], msg.get("idle"), msg.get("b"))
        )

    def mark_idle(self, source: int) -> list[bytes]:
        return self._encode(self.evaluator.mark_idle(str(source)))

    def _encode(self, reports: list[Report]) -> list[bytes]:
        judged = self.evaluator.evaluated_until
        if judged is not None:  # a partial of a judged window is dropped as late anyway
            for start in [w for w in self.received if w < judged]:
                del self.received[start]
        return [orjson.dumps({"src": self.partition, **r.to_json()}) for r in reports]

    def snapshot(self) -> Iterator[bytes]:
        """The stage's JSON in pieces: a slice's state is made as it is written."""

        def pairs() -> Iterator[tuple[str, Any]]:
            yield "ev", self.evaluator.members()
            yield "pos", self.positions.last
            yield (
                "recv",
                {
                    str(w): {src: sorted(keys) for src, keys in by_source.items()}
                    for w, by_source in self.received.items()
                },
            )

        return encode(Members(pairs))

    def restore(self, pieces: Iterable[bytes]) -> None:
        """Each slice's state is built as it is read, its JSON let go."""

        def take(path: tuple[str, ...], key: str, value: Any) -> bool:
            if path != ("ev", "slices"):
                return False
            self.evaluator.restore_slice(key, value)
            return True

        snap = decode(pieces, take)
        self.evaluator.restore(snap["ev"])
        self.positions = Positions(snap["pos"])
        self.received = {
            int(w): {src: set(keys) for src, keys in by_source.items()}
            for w, by_source in snap["recv"].items()
        }


@dataclass
class StageThree:
    """Owns the whole reports topic (one partition: only candidates travel on it)."""

    catalog: Catalog
    settings: EngineSettings
    source_partitions: int
    book: AlertBook = field(init=False)
    last_source: str = ""
    positions: Positions = field(default_factory=Positions)
    received: dict[int, set[str]] = field(default_factory=dict)  # window -> sources reported
    duplicates: int = 0  # reports received twice, dropped

    def __post_init__(self) -> None:
        sources = tuple(str(p) for p in range(self.source_partitions))
        self.book = AlertBook(self.settings, sources, self.catalog.version)

    def on_message(self, value: bytes) -> list[dict[str, Any]]:
        msg = orjson.loads(value)
        source = self.last_source = str(msg["src"])
        if msg.get("k") == "hb":  # a partials partition still waiting for its sources
            self.book.marks.hear(source)
            return []
        report = Report.from_json(msg)
        if report.start is not None:
            if self._decided(report.start) or source in self.received.get(report.start, ()):
                self.duplicates += 1
                return []
            self.received.setdefault(report.start, set()).add(source)
        return self._forget_decided(self.book.add(source, report))

    def mark_idle(self, source: int) -> list[dict[str, Any]]:
        return self._forget_decided(self.book.mark_idle(str(source)))

    def _decided(self, start: int) -> bool:
        """A source reports a window before its mark passes it, so a report of a
        window every source has passed is one received before."""
        complete = self.book.marks.low(self.book.sources)
        return complete is not None and start + self.settings.window_s <= complete

    def _forget_decided(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for start in [w for w in self.received if self._decided(w)]:
            del self.received[start]
        return alerts

    def snapshot(self) -> Iterator[bytes]:
        return encode(
            {
                "book": self.book.snapshot(),
                "pos": self.positions.last,
                "recv": {str(w): sorted(sources) for w, sources in self.received.items()},
            }
        )

    def restore(self, pieces: Iterable[bytes]) -> None:
        snap = decode(pieces)
        self.book.restore(snap["book"])
        self.positions = Positions(snap["pos"])
        self.received = {int(w): set(sources) for w, sources in snap["recv"].items()}
