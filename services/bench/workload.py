"""The benchmark's input: the simulator's mix of events, seeded, serialized once.

Throughput runs read the simulator's traffic as it comes (its event sizes, its
48 leaf slices); the memory runs keep the same events but spread them over as
many leaf slices as it takes to make 1,000 or 10,000 slices in all; the latency
run has complaint spikes to find.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.common.connection import KafkaConnection
from services.common.events import Topics, event_time, partition_key
from services.common.kafka import producer
from services.common.simulator import Incident, Simulator
from services.ingest.sink import KafkaSink
from services.ingest.sink import Record as SinkRecord

START = datetime(2026, 3, 2, 6, tzinfo=UTC)  # a Monday morning
EVENTS_PER_SESSION_HOUR = 60  # the simulator's events per hour per session/minute, about


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    ts: float


def records(events: Iterable[dict[str, Any]], topics: Topics) -> list[Record]:
    return [
        Record(topics.events[e["type"]], partition_key(e), orjson.dumps(e), event_time(e))
        for e in events
    ]


def traffic(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` events of the simulator's mix: a day of traffic, as dense as it takes."""
    hours = 24.0
    rate = count / (hours * EVENTS_PER_SESSION_HOUR) * 1.2
    sim = Simulator(START, timedelta(hours=hours), seed, rate)
    events = list(itertools.islice(sim.events(), count))
    if len(events) < count:
        raise RuntimeError(f"the simulator made {len(events)} events, not {count}")
    return events


def dimensions(slices: int) -> tuple[int, int, int]:
    """Regions, channels and platforms whose leaves make about ``slices`` slices with
    their roll-ups: (r + 1)(c + 1)(p + 1)."""
    side = round(slices ** (1 / 3)) - 1
    best = (side, side, side)
    for r in range(max(1, side - 6), side + 8):
        for c in range(max(1, side - 6), side + 8):
            p = max(1, round(slices / ((r + 1) * (c + 1))) - 1)
            if abs((r + 1) * (c + 1) * (p + 1) - slices) < abs(
                math.prod(d + 1 for d in best) - slices
            ):
                best = (r, c, p)
    return best


def many_slices(
    slices: int, windows: int, per_leaf: int, seed: int, window_s: int
) -> tuple[list[dict[str, Any]], int]:
    """Events of the simulator's mix over enough leaves for ``slices`` slices:
    ``per_leaf`` events of each leaf in each of ``windows`` windows; and how many
    slices that is."""
    r, c, p = dimensions(slices)
    leaves = list(itertools.product(range(r), range(c), range(p)))
    templates = traffic(min(50_000, len(leaves) * per_leaf), seed)
    pick = itertools.cycle(templates)
    t0 = START.timestamp()
    out: list[dict[str, Any]] = []
    for w in range(windows):
        for i in range(len(leaves) * per_leaf):
            leaf = leaves[i % len(leaves)]
            ts = t0 + w * window_s + (i / (len(leaves) * per_leaf)) * window_s
            out.append(
                {
                    **next(pick),
                    "event_id": f"m{w}-{i}",
                    "ts": datetime.fromtimestamp(ts, UTC).isoformat(),
                    "region": f"r{leaf[0]}",
                    "channel": f"c{leaf[1]}",
                    "platform": f"p{leaf[2]}",
                }
            )
    return out, (r + 1) * (c + 1) * (p + 1)


def spikes(count: int, seed: int) -> tuple[list[dict[str, Any]], datetime]:
    """Traffic with ``count`` complaint spikes, each in a leaf slice of its own, 20
    minutes apart after three and a half hours of history; and when the first starts."""
    sim_leaves = [
        (r, c, p)
        for r in ("na", "eu", "apac")
        for c in ("web", "app")
        for p in ("desktop", "ios", "android")
    ]
    first = START + timedelta(hours=3.5)
    incidents = [
        Incident(
            family="complaint",
            slice={"region": r, "channel": c, "platform": p},
            start=first + timedelta(minutes=20 * i),
            duration=timedelta(minutes=5),
            magnitude=9.5,
        )
        for i, (r, c, p) in zip(range(count), itertools.cycle(sim_leaves), strict=False)
    ]
    hours = 3.5 + count / 3 + 0.5
    sim = Simulator(START, timedelta(hours=hours), seed, 75.0, incidents=incidents)
    return list(sim.events()), first


def produce(kafka: KafkaConnection, batch: list[Record]) -> float:
    """Every record, acknowledged, through the producer the ingest service uses: the
    producer limit in events/s."""
    prod = producer(kafka, "opswatch-bench")
    try:
        clock = time.perf_counter()
        futures = [prod.send(r.topic, key=r.key, value=r.value) for r in batch]
        prod.flush(timeout=600)
        for f in futures:
            f.get(timeout=10)
        return len(batch) / (time.perf_counter() - clock)
    finally:
        prod.close(timeout=10)


def store(kafka: KafkaConnection, batch: list[Record]) -> float:
    """Every record, acknowledged, written as ingest writes a request of 500 events:
    batch records, one or more per partition. Events/s."""
    sink = KafkaSink(kafka, timeout_s=60.0)
    try:
        clock = time.perf_counter()
        for i in range(0, len(batch), 500):
            sink.send([SinkRecord(r.topic, r.key, r.value) for r in batch[i : i + 500]])
        return len(batch) / (time.perf_counter() - clock)
    finally:
        sink.close()


def chunks(batch: list[Record], span_s: float) -> Iterator[list[Record]]:
    """Consecutive records whose event times fall in the same ``span_s`` seconds."""
    for _, group in itertools.groupby(batch, key=lambda r: int(r.ts // span_s)):
        yield list(group)
