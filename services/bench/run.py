"""The benchmark's phases, each against the real broker, and the figures they give.

Every phase has topics of its own (a namespace per phase, deleted at the end),
so no run reads another's records. The limits are measured in the same run as
what they bound: the plain consumer reads the very topics the single detector
worker then reads, and the plain producer writes the records ingest is then
sent over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPartition

from services.bench import workload
from services.bench.services import Service, ServiceError, ready, spawn, wait_until
from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.events import Topics, event_time, leaf_of
from services.common.kafka import admin_client, ensure_topics, slot
from services.common.sinks import to_file
from services.detector.engine.catalog import feeds_catalog
from services.detector.engine.engine import Engine
from services.detector.replay import replay
from services.ingest.sink import KafkaSink
from services.ingest.sink import Record as SinkRecord

EVENTS = "opswatch_detector_events_processed_total"


@dataclass(frozen=True)
class Size:
    events: int  # pre-produced for the limit and the detector runs
    ingest_events: int
    spikes: int  # complaint spikes in the latency run
    memory_windows: int
    most_slices: int  # the largest worker of the memory run (0: none)

    @classmethod
    def of(cls, quick: bool, events: int | None) -> Size:
        if quick:
            return cls(events or 100_000, 40_000, 5, 3, 0)
        return cls(events or 1_000_000, 200_000, 24, 4, 100_000)


@dataclass
class Figures:
    """What one run measured; ``to_json`` is the contract other tools read."""

    events: int
    seed: int
    partitions: int
    limit_events_per_s: float = 0.0
    limit_single_events_per_s: float = 0.0  # the limit over one record per event
    producer_limit_events_per_s: float = 0.0
    producer_batched_events_per_s: float = 0.0  # writing batch records, as ingest does
    detector_events_per_s: float = 0.0
    detector_2workers_events_per_s: float = 0.0
    detector_single_events_per_s: float = 0.0  # over one record per event
    replay_events_per_s: float = 0.0  # opswatch replay of the events, as a file
    read_limit_events_per_s: float = 0.0  # reading that file: lines and orjson, no more
    ingest_events_per_s: float = 0.0
    ingest_events: int = 0
    latencies_s: list[float] = field(default_factory=list)
    alerts_expected: int = 0
    alerts_missed: int = 0
    rss_bytes_1k_slices: int = 0
    rss_bytes_10k_slices: int = 0
    slices_1k: int = 0
    slices_10k: int = 0
    rss_bytes_100k_slices: int = 0
    rss_peak_bytes_100k_slices: int = 0
    rss_peak_bytes_100k_slices_restored: int = 0
    slices_100k: int = 0
    metrics: int = 0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_s)
        per_slice_metric = (self.rss_bytes_10k_slices - self.rss_bytes_1k_slices) / max(
            1, (self.slices_10k - self.slices_1k) * self.metrics
        )
        return {
            "events": self.events,
            "seed": self.seed,
            "partitions": self.partitions,
            "limit_events_per_s": round(self.limit_events_per_s),
            "limit_single_records_events_per_s": round(self.limit_single_events_per_s),
            "detector_events_per_s": round(self.detector_events_per_s),
            "detector_2workers_events_per_s": round(self.detector_2workers_events_per_s),
            "detector_single_records_events_per_s": round(self.detector_single_events_per_s),
            "detector_single_records_limit_ratio": round(
                self.detector_single_events_per_s / max(1.0, self.limit_single_events_per_s), 3
            ),
            "detector_limit_ratio": round(
                self.detector_events_per_s / max(1.0, self.limit_events_per_s), 3
            ),
            "replay_events_per_s": round(self.replay_events_per_s),
            "read_limit_events_per_s": round(self.read_limit_events_per_s),
            "replay_limit_ratio": round(
                self.replay_events_per_s / max(1.0, self.read_limit_events_per_s), 3
            ),
            "ingest_events_per_s": round(self.ingest_events_per_s),
            "ingest_events": self.ingest_events,
            "producer_limit_events_per_s": round(self.producer_limit_events_per_s),
            "ingest_producer_ratio": round(
                self.ingest_events_per_s / max(1.0, self.producer_limit_events_per_s), 3
            ),
            "producer_batched_events_per_s": round(self.producer_batched_events_per_s),
            "ingest_producer_batched_ratio": round(
                self.ingest_events_per_s / max(1.0, self.producer_batched_events_per_s), 3
            ),
            "latency_p50_s": round(quantile(lat, 0.5), 3),
            "latency_p99_s": round(quantile(lat, 0.99), 3),
            "latency_max_s": round(lat[-1], 3) if lat else None,
            "latency_samples": len(lat),
            "latencies_s": [round(x, 3) for x in lat],
            "alerts_expected": self.alerts_expected,
            "alerts_missed": self.alerts_missed,
            "rss_bytes_1k_slices": self.rss_bytes_1k_slices,
            "rss_bytes_10k_slices": self.rss_bytes_10k_slices,
            "slices_1k": self.slices_1k,
            "slices_10k": self.slices_10k,
            "rss_bytes_100k_slices": self.rss_bytes_100k_slices,
            "rss_peak_bytes_100k_slices": self.rss_peak_bytes_100k_slices,
            "rss_peak_bytes_100k_slices_restored": self.rss_peak_bytes_100k_slices_restored,
            "slices_100k": self.slices_100k,
            "metrics_per_slice": self.metrics,
            "state_bytes_per_slice_metric": round(per_slice_metric),
        }


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile of sorted ``values`` (nan when there are none)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(-(-q * len(values) // 1)) - 1))]


class Bench:
    def __init__(
        self,
        settings: OpswatchSettings,
        kafka: KafkaConnection,
        size: Size,
        seed: int,
        say: Callable[[str], None],
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.size = size
        self.seed = seed
        self.say = say
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"
        self.partitions = settings.kafka_partitions
        self.workdir = Path(tempfile.mkdtemp(prefix="opswatch-bench-"))
        self.services: list[Service] = []
        self.figures = Figures(size.events, seed, self.partitions)

    # --- plumbing ------------------------------------------------------------------

    def env(self, phase: str, **extra: str) -> dict[str, str]:
        ns = f"{self.prefix}-{phase}"
        return {
            **os.environ,
            "OPSWATCH_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "OPSWATCH_TOPIC_NAMESPACE": ns,
            "OPSWATCH_DETECTOR_APP_ID": f"{ns}-detector",
            "OPSWATCH_DATABASE_URL": f"sqlite:///{self.workdir / phase}-alerts.db",
            "OPSWATCH_LOG_LEVEL": "WARNING",
            **extra,
        }

    def topics(self, phase: str) -> Topics:
        topics = Topics(f"{self.prefix}-{phase}")
        ensure_topics(self.kafka, topics, self.partitions)
        return topics

    def spawn(self, phase: str, name: str, kind: str, **extra: str) -> Service:
        service = spawn(f"{phase}-{name}", kind, self.env(phase, **extra), self.workdir)
        self.services.append(service)
        return service

    def start(
        self, phase: str, name: str, kind: str, health: str = "/metrics", **extra: str
    ) -> Service:
        return ready(self.spawn(phase, name, kind, **extra), health)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Stops every service this run started and deletes its topics, whatever
        happened; its working directory (the services' logs) goes when all went well."""
        try:
            yield
        finally:
            for service in self.services:
                with contextlib.suppress(Exception):
                    service.stop()
            self.delete_topics()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def delete_topics(self) -> None:
        admin = admin_client(self.kafka, "opswatch-bench")
        try:
            mine = [t for t in admin.list_topics() if t.startswith(self.prefix)]
            if mine:
                admin.delete_topics(mine, timeout_ms=30_000)
        finally:
            admin.close()

    # --- phases --------------------------------------------------------------------

    def run(self) -> Figures:
        with self.running():
            self.say(f"simulating {self.size.events:,} events (seed {self.seed})")
            events = workload.traffic(self.size.events, self.seed)
            one, two = self.topics("one"), self.topics("two")
            batch = workload.records(events, one)
            self.say("producing them, one record each, with the producer ingest uses")
            plain = self.topics("plain")
            self.figures.producer_limit_events_per_s = workload.produce(
                self.kafka, workload.records(events, plain)
            )
            self.say("the same producer writing them as ingest does, in batch records, twice")
            self.figures.producer_batched_events_per_s = workload.store(self.kafka, batch)
            workload.store(self.kafka, workload.records(events, two))
            self.say("reading them with a plain aiokafka consumer (the limit)")
            self.figures.limit_events_per_s = asyncio.run(self.plain_consumer(one))
            self.say("and the same events one record each")
            self.figures.limit_single_events_per_s = asyncio.run(self.plain_consumer(plain))
            self.say("the detector, one worker")
            self.figures.detector_events_per_s = self.detector("one", 1)
            self.say("the detector, two workers")
            self.figures.detector_2workers_events_per_s = self.detector("two", 2)
            self.say("the detector, one worker, over the records of one event each")
            self.figures.detector_single_events_per_s = self.detector("plain", 1)
            self.say("opswatch replay of the same events as a file, and reading that file")
            self.replay(events)
            sent = events[: self.size.ingest_events]
            self.say(f"ingest over HTTP, {len(sent):,} events in batches of 500")
            self.figures.ingest_events_per_s = self.ingest(sent)
            self.say(f"window close to alert in the API, {self.size.spikes} complaint spikes")
            self.latency()
            self.say(
                "detector memory with 1,000 and with 10,000 slices"
                + (f" and with {self.size.most_slices:,}" if self.size.most_slices else "")
            )
            self.memory()
        return self.figures

    def replay(self, events: list[dict[str, Any]]) -> None:
        """``opswatch replay`` over the events written as a file, in this process, and
        the limit of its input: reading the same file line by line, decoding each."""
        source = self.workdir / "replay.ndjson"
        to_file(events, source)
        clock = time.perf_counter()
        with source.open("rb") as lines:
            decoded = sum(1 for line in lines if orjson.loads(line))
        self.figures.read_limit_events_per_s = decoded / (time.perf_counter() - clock)
        clock = time.perf_counter()
        with source.open("rb") as lines, (self.workdir / "replay.alerts").open("wb") as sink:
            stats = replay(lines, sink, self.settings.catalog(), self.settings.engine())
        self.figures.replay_events_per_s = stats.events / (time.perf_counter() - clock)

    async def plain_consumer(self, topics: Topics) -> float:
        """Events/s of a plain consumer reading and decoding every event, first to last."""
        consumer = AIOKafkaConsumer(**self.kafka.client(enable_auto_commit=False))
        await consumer.start()
        try:
            tps = [
                TopicPartition(t, p) for t in topics.events.values() for p in range(self.partitions)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            total, first = 0, time.perf_counter()
            deadline = first + 600
            while total < self.size.events:
                if time.perf_counter() > deadline:
                    raise ServiceError(f"read {total} of {self.size.events} events in 600 s")
                batches = await consumer.getmany(timeout_ms=1000)
                for batch in batches.values():
                    for record in batch:
                        value = orjson.loads(record.value)
                        total += len(value) if isinstance(value, list) else 1
            return total / (time.perf_counter() - first)
        finally:
            await consumer.stop()

    def detector(self, phase: str, workers: int) -> float:
        """Events/s of the detector from the first event processed to the last, the
        topics' ``events`` records already there when the workers start."""
        group = [self.spawn(phase, f"detector{i}", "detector") for i in range(workers)]
        for worker in group:  # all started before any is waited for: they join together
            ready(worker, "/metrics")
        drained = Drained(self.kafka, f"{self.prefix}-{phase}-detector", self.topics(phase))
        samples: list[tuple[float, float]] = []  # (time, events processed), from the first

        def done() -> bool:
            count = sum(w.metric(EVENTS) for w in group)
            if count > 0:
                samples.append((time.monotonic(), count))
            # a worker that takes partitions over applies some events again and counts
            # them again: the last event is processed when the group has committed all
            return count >= self.size.events and drained()

        try:
            wait_until(done, 900, group, "the last event", 0.1)
        finally:
            drained.close()
        for w in group:
            w.stop()
        (t0, c0), (t1, _) = samples[0], samples[-1]
        return (self.size.events - c0) / max(t1 - t0, 0.1)

    def ingest(self, events: list[dict[str, Any]]) -> float:
        """Events/s accepted by one ingest process, batches of 500 sent over 8 connections."""
        self.topics("ingest")
        service = self.start("ingest", "ingest", "ingest", "/readyz")
        bodies = [orjson.dumps(events[i : i + 500]) for i in range(0, len(events), 500)]
        accepted, seconds = asyncio.run(post_all(service.url + "/v1/events", bodies, 8))
        service.stop()
        self.figures.ingest_events = accepted
        if accepted != len(events):
            raise ServiceError(f"ingest accepted {accepted} of {len(events)} events")
        return accepted / seconds

    def latency(self) -> None:
        """From the moment the records that carry every partition's watermark past a
        window's end are in Kafka to the window's alerts being listed by the API."""
        events, first_spike = workload.spikes(self.size.spikes, self.seed)
        settings = self.settings
        window_s, lateness_s = (
            int(settings.window.total_seconds()),
            int(settings.lateness.total_seconds()),
        )
        expected = golden_alerts(events, settings)
        topics = self.topics("latency")
        batch = workload.records(events, topics)
        cut = first_spike.timestamp() - window_s
        history = [r for r in batch if r.ts < cut]
        paced = [r for r in batch if r.ts >= cut]
        workload.store(self.kafka, history)
        alerting = self.start("latency", "alerting", "alerting")
        detector = self.start("latency", "detector", "detector")
        wait_until(
            lambda: detector.metric(EVENTS) >= len(history),
            300,
            [alerting, detector],
            "the history to be read",
        )
        watch = AlertWatch(alerting.url + "/v1/alerts")
        # the watermark waits for the topics that feed the catalog's metrics only
        # (the workload writes no metric events)
        waited = sum(map(feeds_catalog, topics.events))
        closes = Closes(waited, self.partitions, window_s, lateness_s)
        sink = KafkaSink(self.kafka)
        try:
            with watch.polling():
                # a minute of event time every 0.2 s: a window a second, written as
                # ingest writes a request, each event in its key's partition
                for chunk in workload.chunks(paced, window_s / 5):
                    began = time.monotonic()
                    sink.send([SinkRecord(r.topic, r.key, r.value) for r in chunk])
                    for r in chunk:
                        closes.saw(r.topic, slot(r.key, self.partitions), r.ts)
                    closes.note(time.monotonic())
                    time.sleep(max(0.0, 0.2 - (time.monotonic() - began)))
                due = {i: end for i, end in expected.items() if end in closes.at}
                with contextlib.suppress(ServiceError):
                    wait_until(lambda: due.keys() <= watch.seen.keys(), 30, [alerting], "alerts")
        finally:
            sink.close()
        self.figures.alerts_expected = len(due)
        self.figures.alerts_missed = len(due.keys() - watch.seen.keys())
        self.figures.latencies_s = [
            watch.seen[i] - closes.at[end] for i, end in due.items() if i in watch.seen
        ]

    def memory(self) -> None:
        """Resident memory of one worker holding 1,000 and 10,000 slices, each slice
        with events in every window; the difference per slice and metric."""
        self.figures.metrics = len(self.settings.catalog().names)
        f = self.figures
        f.rss_bytes_1k_slices, _, f.slices_1k = self.resident(1_000)
        f.rss_bytes_10k_slices, _, f.slices_10k = self.resident(10_000)
        if self.size.most_slices:
            f.rss_bytes_100k_slices, f.rss_peak_bytes_100k_slices, f.slices_100k = self.resident(
                self.size.most_slices, 1, 1
            )
            f.rss_peak_bytes_100k_slices_restored = self.restarted(
                self.size.most_slices, f.slices_100k
            )

    def resident(self, target: int, per_leaf: int = 3, windows: int = 0) -> tuple[int, int, int]:
        """The detector's RSS once it tracks about ``target`` slices, the most it had
        until then (its snapshots included), and how many slices;
        ``per_leaf`` events of each leaf slice in each of ``windows`` judged windows
        (the size's by default) and one that closes them. A worker judging 100,000
        slices takes minutes a window here: it is given time to."""
        window_s = int(self.settings.window.total_seconds())
        events, slices = workload.many_slices(
            target, (windows or self.size.memory_windows) + 1, per_leaf, self.seed, window_s
        )
        patience = max(1.0, target / 30_000)
        phase = f"mem{target}"
        workload.store(self.kafka, workload.records(events, self.topics(phase)))
        # every slice has a few events only: track each all the same
        detector = self.start(
            phase,
            "detector",
            "detector",
            OPSWATCH_MIN_SLICE_VOLUME="0",
            OPSWATCH_MAX_SLICES=str(max(self.settings.max_slices, 2 * target)),
        )
        # polled once a second: the worker's metrics page of thousands of KPI series
        # takes its interpreter for a while at each read
        wait_until(
            lambda: detector.metric(EVENTS) >= len(events),
            600 * patience,
            [detector],
            f"{len(events):,} events of {slices:,} slices",
            every_s=1.0,
        )
        wait_until(
            lambda: detector.metric("opswatch_detector_tracked_slices") >= slices,
            120 * patience,
            [detector],
            f"{slices:,} slices tracked",
            every_s=1.0,
        )
        time.sleep(2.0)
        rss, peak = detector.rss_bytes(), detector.rss_bytes("VmHWM")
        detector.stop()
        return rss, peak, slices

    def restarted(self, target: int, slices: int) -> int:
        """The most a new worker holds while it takes ``resident(target)``'s worker's
        partitions over: until it tracks the ``slices`` again, from their snapshots
        (and what they had not seen yet)."""
        detector = self.start(
            f"mem{target}",
            "detector-again",
            "detector",
            OPSWATCH_MIN_SLICE_VOLUME="0",
            OPSWATCH_MAX_SLICES=str(max(self.settings.max_slices, 2 * target)),
        )
        wait_until(
            lambda: detector.metric("opswatch_detector_tracked_slices") >= slices,
            600 * max(1.0, target / 30_000),
            [detector],
            f"{slices:,} slices restored",
            every_s=1.0,
        )
        peak = detector.rss_bytes("VmHWM")
        detector.stop()
        return peak


class Drained:
    """Whether a consumer group has committed every event record there is now."""

    def __init__(self, kafka: KafkaConnection, group: str, topics: Topics) -> None:
        self.group = group
        self.admin = admin_client(kafka, "opswatch-bench")
        consumer = KafkaConsumer(**kafka.client(client_id="opswatch-bench"))
        try:
            tps = [
                KafkaPartition(t, p)
                for t in topics.events.values()
                for p in consumer.partitions_for_topic(t) or ()
            ]
            self.ends: dict[Any, int] = consumer.end_offsets(tps)
        finally:
            consumer.close()

    def __call__(self) -> bool:
        committed = self.admin.list_group_offsets(self.group).get(self.group, {})
        # a partition nobody wrote to (the metric events' topic, in the bench) has
        # nothing to commit: it is drained as it is
        return all(
            end == 0 or (tp in committed and committed[tp].offset >= end)
            for tp, end in self.ends.items()
        )

    def close(self) -> None:
        self.admin.close()


def golden_alerts(events: list[dict[str, Any]], settings: OpswatchSettings) -> dict[str, float]:
    """Each alert one engine raises over the events: id -> the end of its first window."""
    engine = Engine(settings.catalog(), settings.engine())
    ends: dict[str, float] = {}
    for e in events:
        engine.add(e, event_time(e), leaf_of(e))
        for alert in engine.poll():
            end = datetime.fromisoformat(alert["window_end"]).timestamp()
            ends.setdefault(alert["id"], end)
    return ends


class Closes:
    """When each window boundary was passed by every partition's watermark, computed
    as the detector computes it: per partition, the slowest event topic's newest
    event time less the lateness."""

    def __init__(self, topics: int, partitions: int, window_s: int, lateness_s: int) -> None:
        self.partitions = partitions
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.topics = topics
        self.newest: dict[tuple[str, int], float] = {}
        self.first: float | None = None  # passed before the count started
        self.at: dict[float, float] = {}  # boundary -> monotonic time it was passed

    def saw(self, topic: str, partition: int, ts: float) -> None:
        key = (topic, partition)
        self.newest[key] = max(ts, self.newest.get(key, ts))

    def judged(self) -> float | None:
        """The window boundary every partition's watermark has passed (None: not
        every event topic of every partition has had a record yet)."""
        if len(self.newest) < self.topics * self.partitions:
            return None
        marks: dict[int, float] = {}
        for (_, p), ts in self.newest.items():
            marks[p] = min(ts, marks.get(p, ts))
        low = min(marks.values()) - self.lateness_s
        return float(int(low // self.window_s) * self.window_s)

    def note(self, now: float) -> None:
        """The records seen so far are in Kafka as of ``now``: every boundary passed
        since the last note was passed then (the first note only starts the count)."""
        judged = self.judged()
        if judged is None:
            return
        if self.first is None:
            self.first = judged
        boundary = self.first + self.window_s
        while boundary <= judged:
            self.at.setdefault(boundary, now)
            boundary += self.window_s


class AlertWatch:
    """The first time each alert id is listed by GET /v1/alerts (monotonic)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()

    def poll(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    page = client.get(self.url, params={"limit": 500}).json()
                    now = time.monotonic()
                    for item in page["items"]:
                        self.seen.setdefault(item["id"], now)
                self._stop.wait(0.02)

    @contextlib.contextmanager
    def polling(self) -> Iterator[None]:
        thread = threading.Thread(target=self.poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=10)


async def post_all(url: str, bodies: list[bytes], connections: int) -> tuple[int, float]:
    """Every body posted (503s retried after Retry-After): events accepted, seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0
    headers = {"content-type": "application/json"}

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                answer = await http.post(url, content=body, headers=headers)
                if answer.status_code == 202:
                    accepted += answer.json()["accepted"]
                    break
                if answer.status_code != 503:
                    raise ServiceError(f"ingest answered {answer.status_code}: {answer.text}")
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        clock = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(connections)))
        return accepted, time.perf_counter() - clock


def summary(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows of the table: what, figure, target."""

    def rate(key: str) -> str:
        return f"{figures[key]:,} events/s"

    def mib(key: str) -> str:
        return f"{figures[key] / 2**20:,.0f} MiB"

    return [
        ("plain consumer + JSON decode (the limit)", rate("limit_events_per_s"), ""),
        (
            "the same, one record per event",
            rate("limit_single_records_events_per_s"),
            "",
        ),
        ("detector, 1 worker", rate("detector_events_per_s"), ">= 50,000"),
        ("detector, 2 workers", rate("detector_2workers_events_per_s"), ""),
        ("detector / limit", f"{figures['detector_limit_ratio']:.2f}", ">= 0.30"),
        (
            "detector, 1 worker, one record per event",
            rate("detector_single_records_events_per_s"),
            "",
        ),
        (
            "that / its limit (one record per event)",
            f"{figures['detector_single_records_limit_ratio']:.2f}",
            ">= 0.30",
        ),
        ("opswatch replay, a file", rate("replay_events_per_s"), ""),
        ("reading that file: lines + orjson (its limit)", rate("read_limit_events_per_s"), ""),
        ("replay / its limit", f"{figures['replay_limit_ratio']:.3f}", ">= 0.30"),
        ("plain producer (the producer limit)", rate("producer_limit_events_per_s"), ""),
        ("ingest over HTTP, 1 process", rate("ingest_events_per_s"), ">= 20,000"),
        ("ingest / producer limit", f"{figures['ingest_producer_ratio']:.2f}", ">= 0.50"),
        ("the producer, batch records as ingest writes", rate("producer_batched_events_per_s"), ""),
        ("ingest / that", f"{figures['ingest_producer_batched_ratio']:.2f}", ""),
        (
            "window close to alert listed, p50",
            f"{figures['latency_p50_s']:.2f} s",
            f"{figures['latency_samples']} alerts, {figures['alerts_missed']} missed",
        ),
        ("window close to alert listed, p99", f"{figures['latency_p99_s']:.2f} s", "<= 2 s"),
        (f"detector RSS, {figures['slices_1k']:,} slices", mib("rss_bytes_1k_slices"), ""),
        (
            f"detector RSS, {figures['slices_10k']:,} slices",
            mib("rss_bytes_10k_slices"),
            "<= 1024 MiB",
        ),
        (
            f"detector RSS, {figures['slices_100k']:,} slices",
            mib("rss_bytes_100k_slices") if figures["slices_100k"] else "not measured (--quick)",
            "<= 2048 MiB",
        ),
        (
            f"detector peak RSS, {figures['slices_100k']:,} slices",
            mib("rss_peak_bytes_100k_slices") if figures["slices_100k"] else "",
            "",
        ),
        (
            f"detector peak RSS, {figures['slices_100k']:,} slices taken over",
            mib("rss_peak_bytes_100k_slices_restored") if figures["slices_100k"] else "",
            "<= 2048 MiB",
        ),
        (
            "state per slice and metric",
            f"{figures['state_bytes_per_slice_metric']:,} B",
            "<= 4096 B",
        ),
    ]
