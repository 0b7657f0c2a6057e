"""Replay: the engine over a file of events, in event time, as fast as it can.

Exports are only roughly time-ordered, so events pass through a reorder buffer
that releases them in event-time order once the file has moved ``reorder_s``
past them; within that bound the file's order does not matter, and the engine
sees exactly the stream production would have seen.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson

from services.common.events import (
    EventError,
    MetricNames,
    event_time,
    leaf_of,
    refuse_future,
    reserved_name,
    validate_all,
)
from services.detector.engine.calendar import Calendar
from services.detector.engine.catalog import Catalog
from services.detector.engine.engine import Engine
from services.detector.engine.evaluate import EngineSettings

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    lines: int = 0  # those that are not empty
    events: int = 0
    invalid: int = 0
    first_invalid: str = ""  # "line N: why", of the first invalid line
    late: int = 0
    duplicates: int = 0
    refused_names: int = 0  # metric events of names beyond ``max_metric_names``
    incomplete: int = 0  # windows the input covered only in part (its first and last)
    alerts: int = 0
    seconds: float = 0.0
    tracked_slices: int = 0
    tracked_series: int = 0  # metric event series (a name in a slice)
    unjudged: dict[str, int] = field(default_factory=dict)  # slice-windows, by reason

    @property
    def no_event(self) -> bool:
        """Whether there were lines and none of them was an event (not NDJSON events)."""
        return self.invalid == self.lines > 0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


CHUNK = 1024  # lines checked against the contract in one call


def read_events(
    lines: Iterable[bytes],
    stats: ReplayStats,
    on_invalid: Callable[[int, str], None],
    reserved: frozenset[str],
    now: float,
) -> Iterator[tuple[float, dict[str, Any]]]:
    """The file's valid events in its order, with their event time; each invalid
    line reported with its number, in order too (a metric event named as one of
    the ``reserved`` catalog metrics is invalid, and so is one more than a day
    ahead of ``now``, as ingest refuses it: one such line would otherwise have the
    engine judge every window up to it, centuries of them for a wrong year)."""
    chunk: list[tuple[int, Any]] = []  # (line number, the decoded line or why it is not JSON)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        stats.lines += 1
        try:
            chunk.append((number, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            chunk.append((number, EventError("", f"not valid JSON: {exc}")))
        if len(chunk) == CHUNK:
            yield from _checked(chunk, stats, on_invalid, reserved, now)
            chunk = []
    yield from _checked(chunk, stats, on_invalid, reserved, now)


def _checked(
    chunk: list[tuple[int, Any]],
    stats: ReplayStats,
    on_invalid: Callable[[int, str], None],
    reserved: frozenset[str],
    now: float,
) -> Iterator[tuple[float, dict[str, Any]]]:
    verdicts = iter(validate_all([raw for _, raw in chunk if not isinstance(raw, EventError)]))
    for number, raw in chunk:
        result = raw if isinstance(raw, EventError) else next(verdicts)
        if isinstance(result, dict) and result["type"] == "metric" and result["name"] in reserved:
            result = reserved_name(result["name"])
        if isinstance(result, dict):
            try:
                refuse_future(result, now, "this machine's clock")
            except EventError as exc:
                result = exc
        if isinstance(result, EventError):
            stats.invalid += 1
            on_invalid(number, str(result))
        else:
            yield event_time(result), result


def reorder(
    events: Iterable[tuple[float, dict[str, Any]]], reorder_s: float
) -> Iterator[tuple[float, dict[str, Any]]]:
    heap: list[tuple[float, int, dict[str, Any]]] = []
    newest = float("-inf")
    for seq, (ts, event) in enumerate(events):
        heapq.heappush(heap, (ts, seq, event))
        newest = max(newest, ts)
        while heap and heap[0][0] <= newest - reorder_s:
            ts0, _, ev0 = heapq.heappop(heap)
            yield ts0, ev0
    while heap:
        ts0, _, ev0 = heapq.heappop(heap)
        yield ts0, ev0


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def replay(
    source: IO[bytes],
    sink: Sink,
    catalog: Catalog,
    settings: EngineSettings,
    reorder_s: float = 900.0,
    on_invalid: Callable[[int, str], None] | None = None,
    progress: Callable[[ReplayStats], None] | None = None,
    calendar: Calendar | None = None,
    now: float | None = None,
) -> ReplayStats:
    """The engine over ``source``'s events in event time, its alerts to ``sink``;
    each invalid line reported to ``on_invalid``, and ``progress`` told of every
    4096 events. An event more than a day ahead of ``now`` (this machine's clock
    unless given) is invalid."""
    stats = ReplayStats()
    engine = Engine(catalog, settings, calendar)
    names = MetricNames(settings.max_metric_names)
    started = time.perf_counter()

    def write(alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            sink.write(orjson.dumps(alert, option=orjson.OPT_APPEND_NEWLINE))
        stats.alerts += len(alerts)

    def invalid(number: int, why: str) -> None:
        stats.first_invalid = stats.first_invalid or f"line {number}: {why}"
        if on_invalid is not None:
            on_invalid(number, why)

    clock = time.time() if now is None else now
    events = read_events(source, stats, invalid, frozenset(catalog.names), clock)
    for ts, event in reorder(events, reorder_s):
        try:
            names.admit(event)  # in the order the engine takes them
        except EventError:
            stats.refused_names += 1
            continue
        engine.add(event, ts, leaf_of(event))
        stats.events += 1
        if stats.events % 4096 == 0:
            write(engine.poll())
            if progress is not None:
                stats.seconds = time.perf_counter() - started
                progress(stats)
    write(engine.poll())
    write(engine.flush())
    stats.late = engine.aggregator.stats.late
    stats.duplicates = engine.aggregator.stats.duplicates
    stats.incomplete = engine.incomplete
    stats.tracked_slices = len(engine.evaluator.slices)
    stats.tracked_series = engine.evaluator.tracked - stats.tracked_slices
    stats.unjudged = dict(engine.evaluator.unjudged)
    stats.seconds = time.perf_counter() - started
    return stats
