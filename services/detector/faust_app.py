"""The Faust adapter: Kafka in and out around the two stages. No detection logic here.

The app is built by ``create_app(settings)``, never at import time. Processing
is at-least-once (Faust's exactly-once is experimental); the stages' state is
snapshotted into changelog-backed tables, keyed by partition, so a worker that
takes over a partition resumes from the snapshot instead of warming up again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import replace
from typing import Any

import faust
import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry

from services.common.config import OpswatchSettings
from services.common.events import (
    EventError,
    deadletter_headers,
    decode,
    event_time,
    leaf_of,
)
from services.detector.metrics import KpiExport, Metrics, WatermarkLag
from services.detector.stages import Outgoing, StageOne, StageThree, StageTwo

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_S = 5.0


def create_app(settings: OpswatchSettings, registry: CollectorRegistry) -> faust.App:
    if not settings.kafka_bootstrap:
        raise ValueError("the detector needs OPSWATCH_KAFKA_BOOTSTRAP")
    catalog = settings.catalog()
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
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.detector_data_dir),
        web_enabled=False,
        processing_guarantee="at_least_once",
        topic_partitions=n,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    topics = settings.topics()
    events_topic = app.topic(*topics.events.values(), **raw)
    partials_topic = app.topic(topics.partials, partitions=n, **raw)
    reports_topic = app.topic(topics.reports, partitions=1, **raw)
    alerts_topic = app.topic(topics.alerts, **raw)
    deadletter_topic = app.topic(topics.deadletter, **raw)
    table_opts: dict[str, Any] = {
        "default": None,
        "partitions": n,
        "key_type": bytes,
        "value_type": bytes,
    }
    stage_one_table = app.Table("opswatch-stage-one", **table_opts)
    stage_two_table = app.Table("opswatch-stage-two", **table_opts)
    stage_three_table = app.Table("opswatch-stage-three", **{**table_opts, "partitions": 1})
    three = StageThree(catalog, engine_settings, n)
    heard_three: dict[str, float] = {}
    started_three = time.monotonic()
    ones: dict[int, StageOne] = {}
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
                kpis.update(tp.partition, {})
            with contextlib.suppress(KeyError):
                metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def note_lag(message: Any) -> None:
        tp = TP(message.topic, message.partition)
        # a message of a partition revoked meanwhile: aiokafka asserts it is assigned
        with contextlib.suppress(KeyError, AttributeError, AssertionError):
            behind = app.consumer.highwater(tp) - message.offset - 1
            metrics.consumer_lag.labels(message.topic, str(message.partition)).set(behind)

    twos: dict[int, StageTwo] = {}
    saved: dict[tuple[str, int], float] = {}
    # wall-clock time a (stage, partition, source) was last heard from
    heard: dict[tuple[str, int, str], float] = {}
    idle_after = settings.idle_timeout.total_seconds()
    started: dict[int, float] = {}

    def due(kind: str, partition: int) -> bool:
        now = time.monotonic()
        if now - saved.get((kind, partition), 0.0) < SNAPSHOT_EVERY_S:
            return False
        saved[(kind, partition)] = now
        return True

    def stage_one(partition: int) -> StageOne:
        stage = ones.get(partition)
        if stage is None:
            stage = ones[partition] = StageOne(partition, catalog, engine_settings, n)
            snap = stage_one_table.get(b"%d" % partition)
            if snap is not None:
                stage.restore(snap)
                log.info("stage one restored", extra={"partition": partition})
        return stage

    def stage_two(partition: int) -> StageTwo:
        stage = twos.get(partition)
        if stage is None:
            stage = twos[partition] = StageTwo(partition, catalog, stage_two_settings, n)
            started[partition] = time.monotonic()
            snap = stage_two_table.get(b"%d" % partition)
            if snap is not None:
                clock = time.perf_counter()
                stage.restore(snap)
                metrics.restore_seconds.observe(time.perf_counter() - clock)
                log.info("stage two restored", extra={"partition": partition})
        return stage

    async def dead_letter(event: Any, reason: str, exc: Exception) -> None:
        """The event's own bytes to the dead-letter topic, with why and where from.
        Awaited to the broker's acknowledgement before the event counts as done, so
        its offset is never committed first; a failure here stops the worker."""
        message = event.message
        headers = deadletter_headers(
            "detector",
            reason,
            getattr(exc, "field", ""),
            str(exc),
            exception=type(exc).__name__,
            topic=message.topic,
            partition=str(message.partition),
            offset=str(message.offset),
            timestamp=str(message.timestamp),
        )
        try:
            sent = await deadletter_topic.send(key=message.key, value=event.value, headers=headers)
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

    @app.agent(events_topic)
    async def aggregate(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            note_lag(message)
            stage = stage_one(message.partition)
            try:
                record = decode(event.value)
            except EventError as exc:
                await dead_letter(event, exc.reason, exc)
                continue
            heard[("one", message.partition, message.topic)] = time.monotonic()
            late_before = stage.aggregator.stats.late
            try:
                out = stage.on_event(record, event_time(record), leaf_of(record), message.topic)
                watermarks[message.partition] = stage.aggregator.watermark
            except Exception as exc:  # an event the engine cannot take: kept, not fatal
                log.exception("the engine refused an event", extra={"topic": message.topic})
                await dead_letter(event, "engine", exc)
                continue
            metrics.events.labels(record["type"]).inc()
            if stage.aggregator.stats.late > late_before:
                metrics.late.inc()
            if out:
                await send_all(out)
                if due("one", message.partition):
                    stage_one_table[b"%d" % message.partition] = stage.snapshot()

    @app.agent(partials_topic)
    async def evaluate(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            note_lag(event.message)
            stage = stage_two(partition)
            before = stage.evaluator.evaluated_until
            reports = stage.on_message(event.value)
            heard[("two", partition, stage.last_source)] = time.monotonic()
            await report(partition, stage, before, reports)

    async def report(partition: int, stage: StageTwo, before: int | None, out: list[bytes]) -> None:
        for value in out:
            await reports_topic.send(value=value, partition=0)
        evaluator = stage.evaluator
        judged = evaluator.evaluated_until
        if judged is not None and judged != before:
            metrics.windows.inc()
            p = str(partition)
            metrics.evaluated_until.labels(p).set(judged)
            metrics.tracked_slices.labels(p).set(len(evaluator.slices))
            metrics.late_partials.labels(p).set(evaluator.late_partials)
            for reason, count in evaluator.unjudged.items():
                metrics.unjudged.labels(p, reason).set(count)
            for metric, count in evaluator.warming.items():
                metrics.warming.labels(p, metric).set(count)
            kpis.update(partition, evaluator.kpis)
            if due("two", partition):
                stage_two_table[b"%d" % partition] = stage.snapshot()

    @app.agent(reports_topic)
    async def decide(stream: Any) -> None:
        restored = False
        async for event in stream.events():
            if not restored:  # tables are recovered by the time events flow
                restored = True
                snap = stage_three_table.get(b"book")
                if snap is not None:
                    three.restore(snap)
                    log.info("stage three restored")
            alerts = three.on_message(event.value)
            heard_three[three.last_source] = time.monotonic()
            await publish(alerts)

    async def publish(alerts: list[dict[str, Any]]) -> None:
        for alert in alerts:
            metrics.alerts.labels(alert["metric"], alert["severity"], alert["status"]).inc()
            log.info(
                "alert %s",
                alert["status"],
                extra={"metric": alert["metric"], "slice": alert["slice"], "id": alert["id"]},
            )
            await alerts_topic.send(key=alert["fingerprint"].encode(), value=orjson.dumps(alert))
        if alerts and due("three", 0):
            stage_three_table[b"book"] = three.snapshot()

    @app.timer(interval=max(1.0, idle_after / 4))  # type: ignore[untyped-decorator]
    async def notice_idle_sources() -> None:
        """A topic or partition that has said nothing for ``idle_timeout`` stops
        holding windows open; its next record makes it count again."""
        now = time.monotonic()
        for p, one in ones.items():
            for source in list(one.aggregator.sources.marks):
                quiet = now - heard.get(("one", p, source), now) > idle_after
                if quiet and source not in one.aggregator.sources.idle:
                    log.info("source idle", extra={"partition": p, "topic": source})
                    await send_all(one.mark_idle(source))
                    watermarks[p] = one.aggregator.watermark
        for q, two in twos.items():
            for source in two.evaluator.sources:
                last = heard.get(("two", q, source), started.get(q, now))
                if now - last > idle_after and source not in two.evaluator.marks.idle:
                    log.info("source partition idle", extra={"partition": q, "source": source})
                    before = two.evaluator.evaluated_until
                    await report(q, two, before, two.mark_idle(int(source)))
        if ones or twos:
            for source in three.book.sources:
                last = heard_three.get(source, started_three)
                if now - last > idle_after and source not in three.book.marks.idle:
                    log.info("reporting partition idle", extra={"source": source})
                    await publish(three.mark_idle(int(source)))

    return app
