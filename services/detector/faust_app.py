"""The Faust adapter: Kafka in and out around the two stages. No detection logic here.

The app is built by ``create_app(settings, kafka, registry)``, never at import time. Processing
is at-least-once (Faust's exactly-once is experimental); the stages' state is
snapshotted into changelog-backed tables, keyed by partition, so a worker that
takes over a partition resumes from the snapshot instead of warming up again.
A snapshot records the input position it includes and is written only once
everything the stage sent before it is acknowledged; a worker taking a
partition over catches up from that position to the group's committed offset
(``catchup``) before the stream resumes, and skips what the stream redelivers
below it. So no record is lost to the state or applied to it twice, and what a
stage sends again downstream is recognised there (``stages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar, cast

import faust
import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faust.streams import _current_event as current_event
from faust.types import TP
from prometheus_client import CollectorRegistry

from services.common.calendars import CalendarFeed, effect_key
from services.common.config import OpswatchSettings
from services.common.connection import KafkaConnection
from services.common.events import EventError, deadletter_headers, event_time, read_record
from services.detector import snapshots
from services.detector.catchup import CatchUp
from services.detector.metrics import KpiExport, Metrics, WatermarkLag
from services.detector.stages import Outgoing, StageOne, StageThree, StageTwo

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_S = 5.0
# stage one takes the records its stream delivers in chunks of at most this many,
# waiting at most this long for a chunk to fill
CHUNK_RECORDS = 1000
CHUNK_WITHIN_S = 0.05
KPI_EVERY_S = 1.0
Stage = TypeVar("Stage", StageOne, StageTwo, StageThree)


TABLES = {"opswatch-stage-one": False, "opswatch-stage-two": False, "opswatch-stage-three": True}


def written_at(message: Any) -> float | None:
    """When a record was written, in seconds (None: it has no time). A Kafka record
    (a gap read with a consumer of its own) gives milliseconds, a Faust message
    seconds."""
    if isinstance(message, ConsumerRecord):
        return float(message.timestamp) / 1000
    return cast(float | None, message.timestamp)


def changelogs(settings: OpswatchSettings) -> tuple[str, ...]:
    """The changelog topics of the stages' tables (Faust creates them)."""
    return tuple(f"{settings.detector_app_id}-{table}-changelog" for table in TABLES)


def leader_topic(settings: OpswatchSettings) -> str:
    """Faust's one-partition topic that elects the group's leader; created by opswatch
    (Faust would create it without the topic configuration)."""
    return f"{settings.detector_app_id}-__assignor-__leader"


def create_app(
    settings: OpswatchSettings,
    kafka: KafkaConnection,
    registry: CollectorRegistry,
    feed: CalendarFeed | None = None,
) -> faust.App:
    """The detector's Faust app; ``feed``: the calendar in force (the file's entries
    and those the calendar topic adds), taken by stage two before each message."""
    catalog = settings.catalog()
    feed = feed or CalendarFeed(settings.calendar())
    engine_settings = settings.engine()
    n = settings.kafka_partitions
    # each partition of stage two tracks its share of the slices
    stage_two_settings = replace(
        engine_settings,
        max_slices=math.ceil(engine_settings.max_slices / n),
        kpi_slices=math.ceil(engine_settings.kpi_slices / n),
    )
    metrics = Metrics.create(registry, catalog.names)
    kpis = KpiExport(metrics.kpis)
    app = faust.App(
        settings.detector_app_id,
        **kafka.faust(),
        store="memory://",
        datadir=str(settings.detector_data_dir),
        web_enabled=False,
        processing_guarantee="at_least_once",
        topic_partitions=n,
        # the changelog and repartition topics Faust creates: replicated as opswatch's own
        topic_replication_factor=kafka.replicas,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        # a worker that stops answering loses its partitions to the others this soon
        broker_session_timeout=settings.detector_session_timeout.total_seconds(),
        broker_heartbeat_interval=settings.detector_session_timeout.total_seconds() / 10,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics()
    events_topic = app.topic(*topics.events.values(), **raw)
    partials_topic = app.topic(topics.partials, partitions=n, **raw)
    reports_topic = app.topic(topics.reports, partitions=1, **raw)
    alerts_topic = app.topic(topics.alerts, **raw)
    deadletter_topic = app.topic(topics.deadletter, **raw)
    calendar_topic = app.topic(topics.calendar, partitions=1, **raw)
    table_opts: dict[str, Any] = {
        "default": None,
        "partitions": n,
        "key_type": bytes,
        "value_type": bytes,
        "extra_topic_configs": kafka.topic_configs(),
    }
    stage_one_table = app.Table("opswatch-stage-one", **table_opts)
    stage_two_table = app.Table("opswatch-stage-two", **table_opts)
    stage_three_table = app.Table("opswatch-stage-three", **{**table_opts, "partitions": 1})
    consumed = {*topics.events.values(), topics.partials, topics.reports}
    # the stages of the partitions this worker has now (stage three: the one reports partition)
    ones: dict[int, StageOne] = {}
    twos: dict[int, StageTwo] = {}
    threes: dict[int, StageThree] = {}
    # each partition's watermark as of its last event: the metrics thread reads
    # this copy (taken in one step), never the engine's state, which the loop mutates
    watermarks: dict[int, float | None] = {}
    registry.register(WatermarkLag(lambda: dict(watermarks)))

    @app.on_partitions_revoked.connect
    async def forget(_: Any, /, *args: Any, signal: Any, **__: Any) -> None:
        """Partitions gone to another worker: their stages leave memory (back from the
        changelog if they return) and their series leave the metrics."""
        revoked: set[TP] = args[0]
        for tp in revoked:
            if tp.topic in topics.events.values():
                ones.pop(tp.partition, None)
                watermarks.pop(tp.partition, None)
            elif tp.topic == topics.partials:
                twos.pop(tp.partition, None)
                unexported.pop(tp.partition, None)
                kpis.update(tp.partition, {})
            elif tp.topic == topics.reports:
                threes.pop(tp.partition, None)
            for series in (metrics.consumer_lag, metrics.paused):
                with contextlib.suppress(KeyError):
                    series.remove(tp.topic, str(tp.partition))
        held.difference_update(revoked)

    def note_lag(message: Any) -> None:
        tp = TP(message.topic, message.partition)
        # a message of a partition revoked meanwhile: aiokafka asserts it is assigned
        with contextlib.suppress(KeyError, AttributeError, AssertionError):
            behind = app.consumer.highwater(tp) - message.offset - 1
            metrics.consumer_lag.labels(message.topic, str(message.partition)).set(behind)

    align_s = settings.alignment.total_seconds()
    # the event topic partitions this worker stops reading while they run ahead
    held: set[TP] = set()

    async def fetching(tps: set[TP], on: bool) -> None:
        """Pause or resume fetching ``tps`` in aiokafka's consumer, in the thread Faust
        runs it in. Faust's own ``pause_partitions`` drops the rest of a fetched batch
        of a partition paused meanwhile, as consumed; aiokafka keeps its position and
        fetches those records again once resumed."""
        driver: Any = app.consumer  # faust-streaming's aiokafka driver
        thread = driver._thread
        consumer = thread._ensure_consumer()

        async def switch() -> None:
            (consumer.resume if on else consumer.pause)(*(TopicPartition(*tp) for tp in tps))

        await thread.call_thread(switch)

    async def align(stage: StageOne) -> None:
        """Stop reading the topics of a partition that run more than ``alignment``
        ahead in event time of its slowest topic (their events would only wait in
        open windows), and read them again once it catches up or goes idle. A
        rebalance forgets what was paused: the next call pauses it again."""
        p = stage.partition
        ahead = {TP(topic, p) for topic in stage.aggregator.ahead(align_s)}
        mine = {tp for tp in held if tp.partition == p}
        if ahead - mine:
            await fetching(ahead - mine, on=False)
        if mine - ahead:
            await fetching(mine - ahead, on=True)
        for tp in ahead - mine:
            log.info("topic ahead: paused", extra={"partition": p, "topic": tp.topic})
            metrics.paused.labels(tp.topic, str(p)).set(1)
        for tp in mine - ahead:
            log.info("topic resumed", extra={"partition": p, "topic": tp.topic})
            metrics.paused.remove(tp.topic, str(p))
        held.difference_update(mine)
        held.update(ahead)

    saved: dict[tuple[str, int], float] = {}
    # wall-clock time a (stage, partition, source) was last heard from
    heard: dict[tuple[str, int, str], float] = {}
    # per stage-two partition, its windows begun midway counted in the metric so far
    incomplete_counted: dict[int, int] = {}
    idle_after = settings.idle_timeout.total_seconds()
    unheard_after = settings.unheard_timeout.total_seconds()

    def due(kind: str, partition: int) -> bool:
        now = time.monotonic()
        if now - saved.get((kind, partition), 0.0) < SNAPSHOT_EVERY_S:
            return False
        saved[(kind, partition)] = now
        return True

    def restored(make: Callable[[], Stage], table: Any, key: bytes, what: str) -> Stage:
        """A new stage, with the state of its snapshot in ``table`` if there is one. A
        snapshot this version cannot read is logged and left: the stage starts empty
        and catches up from the start of its partitions."""
        stage = make()
        clock = time.perf_counter()
        try:
            snap = snapshots.pieces(table, key)
            if snap is None:
                log.info("%s starts empty: no snapshot", what, extra={"partition": key.decode()})
                return stage
            stage.restore(snap)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("%s %s: a snapshot this version cannot read (%r)", what, key, exc)
            return make()
        metrics.restore_seconds.observe(time.perf_counter() - clock)
        log.info("%s restored", what, extra={"partition": key.decode()})
        return stage

    source_types = {topic: etype for etype, topic in topics.events.items()}

    def stage_one(partition: int) -> StageOne:
        stage = ones.get(partition)
        if stage is None:
            sources = tuple(topics.events.values())
            stage = ones[partition] = restored(
                lambda: StageOne(partition, catalog, engine_settings, n, sources, source_types),
                stage_one_table,
                b"%d" % partition,
                "stage one",
            )
            now = time.monotonic()  # a topic that says nothing from now on is idle from now on
            for source in sources:
                heard[("one", partition, source)] = now
        return stage

    def stage_two(partition: int) -> StageTwo:
        stage = twos.get(partition)
        if stage is None:
            stage = twos[partition] = restored(
                lambda: StageTwo(partition, catalog, stage_two_settings, n, feed.calendar()),
                stage_two_table,
                b"%d" % partition,
                "stage two",
            )
            now = time.monotonic()
            for source in stage.evaluator.sources:
                heard[("two", partition, source)] = now
            incomplete_counted[partition] = stage.evaluator.incomplete
            # what it restored is tracked from now, not from the next window judged
            metrics.tracked_slices.labels(str(partition)).set(stage.evaluator.tracked)
        stage.evaluator.calendar = feed.calendar()  # entries added at runtime apply from now
        return stage

    def stage_three() -> StageThree:
        stage = threes.get(0)
        if stage is None:
            stage = threes[0] = restored(
                lambda: StageThree(catalog, engine_settings, n),
                stage_three_table,
                b"book",
                "stage three",
            )
            now = time.monotonic()
            for source in stage.book.sources:
                heard[("three", 0, source)] = now
        return stage

    async def dead_letter(
        message: Any, value: bytes, reason: str, exc: Exception, index: int | None = None
    ) -> None:
        """The event's own bytes to the dead-letter topic, with why and where from
        (``message``: a Faust message or a Kafka record; ``index``: the event's place
        in a batch record). Awaited to the broker's acknowledgement before the event
        counts as done, so its offset is never committed first; a failure here stops
        the worker."""
        origin = {} if index is None else {"index": str(index)}
        at = written_at(message)
        headers = deadletter_headers(
            "detector",
            reason,
            getattr(exc, "field", ""),
            str(exc),
            exception=type(exc).__name__,
            topic=message.topic,
            partition=str(message.partition),
            offset=str(message.offset),
            timestamp="" if at is None else str(round(at * 1000)),
            **origin,
        )
        try:
            sent = await deadletter_topic.send(key=message.key, value=value, headers=headers)
            await sent
        except Exception as failure:  # faust would restart the agent and commit: stop instead
            log.critical("dead-letter write failed; stopping rather than lose the record")
            await app.crash(failure)
            raise
        metrics.deadlettered.labels(reason).inc()
        log.warning("event dead-lettered: %s", exc, extra={"topic": message.topic})

    async def send_all(out: list[Outgoing]) -> None:
        for o in out:
            await partials_topic.send(key=o.key, value=o.value, partition=o.partition)

    async def save(
        kind: str, partition: int, table: Any, key: bytes, stage: StageOne | StageTwo | StageThree
    ) -> None:
        """A stage's snapshot, at most every SNAPSHOT_EVERY_S: written once all it sent
        before is acknowledged, so the snapshot's position never runs ahead of its output."""
        if due(kind, partition):
            await app.producer.flush()
            snapshots.write(table, key, stage.snapshot())

    def redelivered(stage: StageOne | StageTwo | StageThree, topic: str, offset: int) -> bool:
        if stage.positions.applied(topic, offset):
            metrics.duplicates.labels("redelivered").inc()
            return True
        return False

    async def take_event(stage: StageOne, message: Any, value: bytes) -> None:
        """One record of an event topic: an event, or a batch of them."""
        if not redelivered(stage, message.topic, message.offset):
            await take_records(stage, [(message, value)])

    async def take_records(stage: StageOne, records: list[tuple[Any, bytes]]) -> None:
        """Records of a stage's partition, in the order read, each topic's in offset
        order and none applied before: their events into the stage in one call, then
        the position past each record (a refused event dead-lettered with its own
        record)."""
        events: list[dict[str, Any]] = []
        sources: list[str] = []
        origin: dict[int, Any] = {}  # id of an event -> its record
        now = time.monotonic()
        for message, value in records:
            found, refused = read_record(value, written_at(message))
            # a record's all at once, each awaited to its acknowledgement: a batch of
            # many bad events does not wait for the broker once per event
            if refused:
                await asyncio.gather(
                    *(
                        dead_letter(message, r.raw, r.error.reason, r.error, r.index)
                        for r in refused
                    )
                )
            if found:
                heard[("one", stage.partition, message.topic)] = now
                origin.update((id(event), message) for event in found)
                events += found
                sources += [message.topic] * len(found)
        if events:
            for bad, failure in await apply_events(stage, sources, events):
                message = origin[id(bad)]
                if isinstance(failure, EventError):  # a rule of stage one's (metric names)
                    await dead_letter(message, orjson.dumps(bad), failure.reason, failure)
                    continue
                log.error("the engine refused an event", exc_info=failure)
                await dead_letter(message, orjson.dumps(bad), "engine", failure)
        for message, _ in records:
            stage.positions.advance(message.topic, message.offset)

    async def fill_gap(
        stage: StageOne | StageTwo | StageThree,
        message: Any,
        take: Callable[[Any, bytes], Awaitable[None]],
    ) -> None:
        """Records between the stage's position and a message the stream delivers did
        not come in the stream (Faust resumes a partition without a committed offset
        where its fetcher was): read them with a consumer of their own, in order, first."""
        if message.offset <= stage.positions.next(message.topic):
            return
        log.warning("records missing from the stream", extra={"topic": message.topic})
        tp = TopicPartition(message.topic, message.partition)
        async with CatchUp(kafka, settings.detector_app_id) as reader:
            async for record in gap(reader, stage, tp, {tp: message.offset}):
                await take(record, record.value)

    async def apply_events(
        stage: StageOne, source: str | list[str], events: list[dict[str, Any]]
    ) -> list[tuple[Mapping[str, Any], Exception]]:
        """Valid events into stage one (``source``: their topic, or each one's), what
        closes sent on; the events the engine refused."""
        stats = stage.aggregator.stats
        late, duplicates = stats.late, stats.duplicates
        out, refused = stage.on_events(events, source)
        watermarks[stage.partition] = stage.aggregator.watermark
        for etype, count in Counter(e["type"] for e in events).items():
            metrics.events.labels(etype).inc(count)
        metrics.late.inc(stats.late - late)
        metrics.duplicates.labels("event").inc(stats.duplicates - duplicates)
        await send_all(out)
        return refused

    @app.agent(events_topic)
    async def aggregate(stream: Any) -> None:
        # a chunk is acknowledged (so committed, what it sent flushed first) when the next
        # is asked for, or when this loop ends, by an error too: records of a chunk the
        # error cut short are then read again by gap fill (the stage's positions never
        # passed them), when the next record of their partition comes or at the next
        # assignment
        async for chunk in stream.take_events(CHUNK_RECORDS, CHUNK_WITHIN_S):
            await take_chunk(chunk)

    async def take_chunk(chunk: list[Any]) -> None:
        """The records the stream delivered, a partition's in its order: a partition's
        records into stage one in one call (fewer when a record is not the next of its
        topic: a gap to fill or a redelivery, checked against the position the stage
        has by then), then the partition's alignment and snapshot once."""
        by_partition: dict[int, list[Any]] = {}
        for event in chunk:
            by_partition.setdefault(event.message.partition, []).append(event)
        for p, events in by_partition.items():
            stage = stage_one(p)
            run: list[tuple[Any, bytes]] = []
            tails: dict[str, int] = {}  # per topic, the offset of its last record in the run
            for event in events:
                message = event.message
                tail = tails.get(message.topic)
                if tail is not None and message.offset == tail + 1:
                    run.append((message, event.value))
                    tails[message.topic] = message.offset
                    continue
                if tail is not None or message.offset > stage.positions.next(message.topic):
                    await take_records(stage, run)
                    run, tails = [], {}
                await fill_gap(stage, message, partial(take_event, stage))
                if not redelivered(stage, message.topic, message.offset):
                    run.append((message, event.value))
                    tails[message.topic] = message.offset
            await take_records(stage, run)
            for message in {event.message.topic: event.message for event in events}.values():
                note_lag(message)
            await align(stage)
            # a table's changelog partition is that of the record being processed
            token = current_event.set(weakref.ref(events[-1]))
            try:
                await save("one", p, stage_one_table, b"%d" % p, stage)
            finally:
                current_event.reset(token)

    async def take_partial(stage: StageTwo, message: Any, value: bytes) -> None:
        topic, offset = message.topic, message.offset
        if redelivered(stage, topic, offset):
            return
        before, duplicates = stage.evaluator.evaluated_until, stage.duplicates
        reports = stage.on_message(value)
        metrics.duplicates.labels("partial").inc(stage.duplicates - duplicates)
        stage.positions.advance(topic, offset)
        await report(stage, before, reports)

    @app.agent(partials_topic)
    async def evaluate(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            note_lag(message)
            stage = stage_two(message.partition)
            await fill_gap(stage, message, partial(take_partial, stage))
            await take_partial(stage, message, event.value)
            heard[("two", message.partition, stage.last_source)] = time.monotonic()
            key = b"%d" % message.partition
            await save("two", message.partition, stage_two_table, key, stage)

    async def report(stage: StageTwo, before: int | None, out: list[bytes]) -> None:
        for value in out:
            await reports_topic.send(value=value, partition=0)
        # calendar entries that ended: what they did, for the digest
        for effect in stage.evaluator.ended_effects():
            await calendar_topic.send(key=effect_key(effect).encode(), value=orjson.dumps(effect))
        evaluator = stage.evaluator
        judged = evaluator.evaluated_until
        metrics.incomplete.inc(evaluator.incomplete - incomplete_counted[stage.partition])
        incomplete_counted[stage.partition] = evaluator.incomplete
        if judged is not None and judged != before:
            metrics.windows.inc()
            p = str(stage.partition)
            metrics.evaluated_until.labels(p).set(judged)
            metrics.tracked_slices.labels(p).set(evaluator.tracked)
            metrics.late_partials.labels(p).set(evaluator.late_partials)
            if time.monotonic() - exported.get(stage.partition, 0.0) >= KPI_EVERY_S:
                export_kpis(stage)
            else:
                unexported[stage.partition] = stage

    # the KPI gauges of a partition at most every KPI_EVERY_S (a partition catching up
    # judges many windows a second); the last judged window's, by the timer at the latest
    exported: dict[int, float] = {}
    unexported: dict[int, StageTwo] = {}

    def export_kpis(stage: StageTwo) -> None:
        evaluator, p = stage.evaluator, str(stage.partition)
        for reason, count in evaluator.unjudged.items():
            metrics.unjudged.labels(p, reason).set(count)
        for metric, count in evaluator.warming.items():
            metrics.warming.labels(p, metric).set(count)
        kpis.update(stage.partition, evaluator.kpis)
        exported[stage.partition] = time.monotonic()
        unexported.pop(stage.partition, None)

    async def take_report(message: Any, value: bytes) -> None:
        topic, offset = message.topic, message.offset
        three = stage_three()
        if redelivered(three, topic, offset):
            return
        duplicates = three.duplicates
        alerts = three.on_message(value)
        metrics.duplicates.labels("report").inc(three.duplicates - duplicates)
        three.positions.advance(topic, offset)
        await publish(alerts)

    @app.agent(reports_topic)
    async def decide(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            await fill_gap(stage_three(), message, take_report)
            await take_report(message, event.value)
            three = stage_three()
            heard[("three", 0, three.last_source)] = time.monotonic()
            await save("three", 0, stage_three_table, b"book", three)

    async def publish(alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            metrics.alerts.labels(alert["metric"], alert["severity"], alert["status"]).inc()
            log.info(
                "alert %s",
                alert["status"],
                extra={"metric": alert["metric"], "slice": alert["slice"], "id": alert["id"]},
            )
            await alerts_topic.send(key=alert["fingerprint"].encode(), value=orjson.dumps(alert))

    @app.on_rebalance_complete.connect
    async def catch_up(_: Any, /, *__: Any, signal: Any, **___: Any) -> None:
        """Tables are recovered and streams not resumed yet: restore the stages of the
        partitions this worker now has and apply what their snapshots missed."""
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in consumed]
        if not assigned:
            return
        clock = time.perf_counter()
        async with CatchUp(kafka, settings.detector_app_id) as reader:
            committed = await reader.committed([TopicPartition(*tp) for tp in assigned])
            for p in sorted(
                {tp.partition for tp in assigned if tp.topic in topics.events.values()}
            ):
                await catch_up_events(reader, stage_one(p), committed)
            for tp in assigned:
                if tp.topic == topics.partials:
                    stage = stage_two(tp.partition)
                    async for r in gap(reader, stage, TopicPartition(*tp), committed):
                        await take_partial(stage, r, r.value)
                elif tp.topic == topics.reports:
                    three = stage_three()
                    async for r in gap(reader, three, TopicPartition(*tp), committed):
                        await take_report(r, r.value)
        # Faust resumes a partition without a committed offset where its fetcher was,
        # past the records a fetch of an earlier generation dropped: when no record
        # comes after them (a topic a backfill has finished), no gap shows in the
        # stream. Such a partition is read from its stage's position instead (if this
        # worker still has it: another rebalance may have begun meanwhile). The seek
        # runs in the consumer's own thread: aiokafka's seek drops the partition's
        # fetched records, which that thread may be draining at the same moment.
        still = app.consumer.assignment()
        for tp in assigned:
            if tp in still and TopicPartition(*tp) not in committed:
                # a partition revoked between the check and the seek (IllegalStateError)
                # or a rebalance begun meanwhile is caught up again once that completes
                try:
                    await app.consumer.seek_wait({tp: owner(tp).positions.next(tp.topic)})
                except (KafkaError, TimeoutError) as exc:
                    log.info("partition not sought: %r", exc, extra={"partition": str(tp)})
        log.info("partitions caught up", extra={"seconds": round(time.perf_counter() - clock, 3)})

    def owner(tp: TP) -> StageOne | StageTwo | StageThree:
        """The stage that reads ``tp``."""
        if tp.topic == topics.partials:
            return stage_two(tp.partition)
        if tp.topic == topics.reports:
            return stage_three()
        return stage_one(tp.partition)

    async def gap(
        reader: CatchUp,
        stage: StageOne | StageTwo | StageThree,
        tp: TopicPartition,
        committed: Mapping[TopicPartition, int],
    ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """The records of ``tp`` after the stage's position, up to the committed offset."""
        start, stop = stage.positions.next(tp.topic), committed.get(tp)
        if stop is not None and start < stop:
            log.info("catching up", extra={"topic": tp.topic, "partition": tp.partition})
            async for record in reader.records(tp, start, stop):
                metrics.caught_up.labels(tp.topic).inc()
                yield record

    async def catch_up_events(
        reader: CatchUp, stage: StageOne, committed: Mapping[TopicPartition, int]
    ) -> None:
        """The three event topics' gaps of one partition, applied in event-time order
        as they happened, not topic after topic: a topic read far ahead of another
        whose mark the snapshot does not have yet would make the other's events late."""
        found: list[tuple[float, str, dict[str, Any]]] = []
        read: list[ConsumerRecord[bytes, bytes]] = []
        for topic in topics.events.values():
            async for r in gap(reader, stage, TopicPartition(topic, stage.partition), committed):
                read.append(r)
                # what it refused, the owner dead-lettered
                events, _ = read_record(r.value, written_at(r))
                found += [(event_time(e), topic, e) for e in events]
        found.sort(key=lambda item: item[0])
        await apply_events(stage, [topic for _, topic, _ in found], [e for _, _, e in found])
        for r in read:
            stage.positions.advance(r.topic, r.offset)

    def read_out(stage: StageOne | StageTwo | StageThree, tp: TP, ends: Mapping[TP, int]) -> bool:
        """Whether the stage has read its input partition ``tp`` to its end."""
        end = ends.get(tp)
        return end is not None and stage.positions.next(tp.topic) >= end

    def idle(stage: StageOne, topic: str, now: float, ends: Mapping[TP, int]) -> bool:
        """Whether a topic of a stage-one partition has gone quiet: read to its end
        (records still unread mean a consumer or a producer catching up, however long
        that takes), not held back by the alignment, silent for ``idle_timeout``, and
        either heard from before or the partition's stream is live (its newest event
        within ``alignment`` of the wall clock). A backfill written topic after topic
        thus waits for a topic not written yet, its other topics held at the alignment:
        for ``unheard_timeout`` at most, so that a topic nobody writes to does not hold
        a backfill back for ever."""
        tp = TP(topic, stage.partition)
        if not read_out(stage, tp, ends) or tp in held:
            return False
        silent = now - heard[("one", stage.partition, topic)]
        if silent <= idle_after:
            return False
        return topic in stage.aggregator.sources.marks or live(stage) or silent > unheard_after

    def unfinished(stage: StageOne, ends: Mapping[TP, int]) -> bool:
        """Whether a stage-one partition has more to say: a topic held back by the
        alignment, or with records left to read, or the watermark waiting for a topic
        not heard from yet, or a topic heard from that has not gone idle yet (it
        will within the idle timeout, and send the windows it closes then). Stage
        two does not take it for idle meanwhile: its own timeout would run out in
        the same check and judge those windows without what is on its way."""
        p, sources = stage.partition, stage.aggregator.sources
        return (
            any(tp.partition == p for tp in held)
            or any(stage.positions.next(t) < ends.get(TP(t, p), 0) for t in stage.sources)
            or (stage.aggregator.watermark is None and bool(sources.marks))
            or any(t in sources.marks and t not in sources.idle for t in stage.sources)
        )

    def live(stage: StageOne) -> bool:
        """Whether a partition's newest event is within ``alignment`` of the wall clock:
        a topic silent then had nothing to say (in a backfill, its events may be
        yet to come)."""
        newest = max(stage.aggregator.sources.marks.values(), default=-math.inf)
        return newest >= time.time() - align_s

    @app.timer(interval=max(1.0, idle_after / 4))  # type: ignore[untyped-decorator]
    async def notice_idle_sources() -> None:
        """A topic or partition that has said nothing for ``idle_timeout`` stops
        holding windows open (a topic: only once read to its end, see ``idle``); its
        next record makes it count again. And the alignment and the heartbeats of the
        stage-one partitions with more to say."""
        for two in list(unexported.values()):
            export_kpis(two)
        now = time.monotonic()
        inputs = [TP(t, p) for p in ones for t in topics.events.values()]
        inputs += [TP(topics.partials, q) for q in twos]
        inputs += [TP(topics.reports, 0)] if threes else []
        try:
            ends = await app.consumer.highwaters(*inputs)
        except (TimeoutError, KafkaError):
            ends = {}  # whether an input is read to its end is unknown: none is idle yet
        for p, one in list(ones.items()):
            # a live stream's quiet topic vouches for its silence up to the timeout ago
            quiet_until = time.time() - idle_after if live(one) else None
            for source in one.sources:
                if source in one.aggregator.sources.idle:
                    one.vouch(source, quiet_until)
                elif idle(one, source, now, ends):
                    log.info("source idle", extra={"partition": p, "topic": source})
                    await send_all(one.mark_idle(source, quiet_until))
                    watermarks[p] = one.aggregator.watermark
            await align(one)
            if unfinished(one, ends):
                await send_all(one.heartbeat())
        # a stage with records of its input left to read has not heard what they say yet
        for q in list(twos):
            two = stage_two(q)
            if not read_out(two, TP(topics.partials, q), ends):
                continue
            for source in two.evaluator.sources:
                if now - heard[("two", q, source)] > idle_after and (
                    source not in two.evaluator.marks.idle
                ):
                    log.info("source partition idle", extra={"partition": q, "source": source})
                    before = two.evaluator.evaluated_until
                    await report(two, before, two.mark_idle(int(source)))
        for three in threes.values():
            if not read_out(three, TP(topics.reports, 0), ends):
                continue
            for source in three.book.sources:
                if now - heard[("three", 0, source)] > idle_after and (
                    source not in three.book.marks.idle
                ):
                    log.info("reporting partition idle", extra={"source": source})
                    await publish(three.mark_idle(int(source)))

    return app
