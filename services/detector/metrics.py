"""The detector's metrics, created on the registry it is given."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.common.contracts import ALL_UP, EVENT_TYPES
from services.common.events import METRIC_NAMES_REASON

SEVERITIES = ("critical", "warning", "info")
STATUSES = ("firing", "resolved")


DEADLETTER_REASONS = ("json", "schema", "limits", "future", "engine", METRIC_NAMES_REASON)
DUPLICATE_KINDS = ("event", "redelivered", "partial", "report")
KPI_SERIES = (
    ("observed", "The business KPI as observed"),
    ("expected", "The KPI expected from the slice's baseline"),
    ("expected_low", "The low end of the KPI's expected band"),
    ("expected_high", "The high end of the KPI's expected band"),
)


def slice_label(slice_key: str) -> str:
    return ALL_UP if slice_key == "*" else slice_key  # engine keys are labels already


class KpiExport:
    """Sets the KPI gauges from an evaluator's last window and removes the series of
    slices that a partition no longer shows, so the exported set stays capped."""

    def __init__(self, gauges: Sequence[Gauge]) -> None:
        self.gauges = gauges
        self.shown: dict[int, set[tuple[str, str]]] = {}

    def update(
        self, partition: int, kpis: Mapping[tuple[str, str], tuple[float, float, float, float]]
    ) -> None:
        now = {(metric, slice_label(key)) for metric, key in kpis}
        for gone in self.shown.get(partition, set()) - now:
            for gauge in self.gauges:
                gauge.remove(*gone)
        for (metric, key), values in kpis.items():
            for gauge, value in zip(self.gauges, values, strict=True):
                gauge.labels(metric, slice_label(key)).set(value)
        self.shown[partition] = now


class WatermarkLag(Collector):
    """Wall-clock seconds between now and each stage-one partition's watermark."""

    def __init__(self, watermarks: Callable[[], Mapping[int, float | None]]) -> None:
        self.watermarks = watermarks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "opswatch_detector_watermark_lag_seconds",
            "How far the event-time watermark trails the wall clock, by events partition.",
            labels=["partition"],
        )
        now = time.time()
        for partition, mark in sorted(self.watermarks().items()):
            if mark is not None:
                family.add_metric([str(partition)], max(0.0, now - mark))
        yield family


@dataclass(frozen=True)
class Metrics:
    events: Counter
    late: Counter
    incomplete: Counter
    deadlettered: Counter
    duplicates: Counter
    caught_up: Counter
    windows: Counter
    alerts: Counter
    restore_seconds: Histogram
    evaluated_until: Gauge
    tracked_slices: Gauge
    late_partials: Gauge
    unjudged: Gauge
    warming: Gauge
    consumer_lag: Gauge
    paused: Gauge
    kpis: tuple[Gauge, Gauge, Gauge, Gauge]  # observed, expected, expected_low, expected_high

    @classmethod
    def create(cls, registry: CollectorRegistry, metric_names: Sequence[str]) -> Metrics:
        m = cls(
            events=Counter(
                "opswatch_detector_events_processed_total",
                "Events applied to windows, by event type.",
                ["type"],
                registry=registry,
            ),
            late=Counter(
                "opswatch_detector_late_events_total",
                "Events that arrived after the watermark had closed their window.",
                registry=registry,
            ),
            incomplete=Counter(
                "opswatch_detector_incomplete_windows_total",
                "Windows the stream began in the middle of (before the first event of all"
                " partitions): never judged; counted by each partition of stage two that"
                " received partials of them.",
                registry=registry,
            ),
            deadlettered=Counter(
                "opswatch_detector_deadlettered_total",
                "Events the detector could not use, written to the dead-letter topic with"
                " their original bytes, by reason (json, schema, limits, future, engine,"
                " metric_names).",
                ["reason"],
                registry=registry,
            ),
            duplicates=Counter(
                "opswatch_detector_duplicates_dropped_total",
                "Input the detector had applied before and dropped, by kind: event (an"
                " event_id seen in the event's open window), redelivered (a record at or"
                " below the partition's applied position, after a crash or a rebalance),"
                " partial and report (an upstream stage's output sent again).",
                ["kind"],
                registry=registry,
            ),
            caught_up=Counter(
                "opswatch_detector_caught_up_records_total",
                "Records between a restored snapshot's position and the group's committed"
                " offset, read again and applied when a partition was taken over.",
                ["topic"],
                registry=registry,
            ),
            windows=Counter(
                "opswatch_detector_windows_evaluated_total",
                "Windows judged by stage two.",
                registry=registry,
            ),
            alerts=Counter(
                "opswatch_detector_alert_updates_total",
                "Alert updates published, by metric, severity and status.",
                ["metric", "severity", "status"],
                registry=registry,
            ),
            restore_seconds=Histogram(
                "opswatch_detector_state_restore_duration_seconds",
                "Time to restore a partition's state from its snapshot.",
                registry=registry,
            ),
            evaluated_until=Gauge(
                "opswatch_detector_evaluated_until_seconds",
                "Event time (Unix seconds) up to which stage two has judged windows.",
                ["partition"],
                registry=registry,
            ),
            tracked_slices=Gauge(
                "opswatch_detector_tracked_slices",
                "Slices and metric event series stage two tracks (has baselines for),"
                " by partition: what OPSWATCH_MAX_SLICES bounds.",
                ["partition"],
                registry=registry,
            ),
            late_partials=Gauge(
                "opswatch_detector_late_partials",
                "Partial aggregates that reached stage two after their window was judged"
                " (a source partition was taken for idle too early), by partition.",
                ["partition"],
                registry=registry,
            ),
            unjudged=Gauge(
                "opswatch_detector_unjudged_slice_windows",
                "Slice-windows left unjudged since the partition's state began, by"
                " partition and reason (low_volume: the slice has not shown"
                " OPSWATCH_MIN_SLICE_VOLUME yet; max_slices: OPSWATCH_MAX_SLICES are"
                " tracked already; idle_source: the metrics that read an event topic"
                " idle in a backfill when the window closed were not judged).",
                ["partition", "reason"],
                registry=registry,
            ),
            warming=Gauge(
                "opswatch_detector_warming_up_slices",
                "Tracked slices whose baseline for a metric is still warming up (not"
                " alerting yet) in the last window judged, by partition and metric.",
                ["partition", "metric"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "opswatch_detector_consumer_lag_messages",
                "Messages behind the partition's end (its high watermark), by topic and"
                " partition, as of the last message this worker processed.",
                ["topic", "partition"],
                registry=registry,
            ),
            paused=Gauge(
                "opswatch_detector_paused_partitions",
                "1 while an event topic's partition is not read because its events run"
                " more than OPSWATCH_ALIGNMENT ahead in event time of the slowest topic"
                " of the partition (a backfill written topic after topic), by topic and"
                " partition.",
                ["topic", "partition"],
                registry=registry,
            ),
            kpis=tuple(  # type: ignore[arg-type]
                Gauge(
                    f"opswatch_kpi_{name}",
                    f"{text}, by metric and slice, in the last window judged (the"
                    " OPSWATCH_KPI_EXPORT_SLICES shallowest slices of each partition).",
                    ["metric", "slice"],
                    registry=registry,
                )
                for name, text in KPI_SERIES
            ),
        )
        for t in EVENT_TYPES:
            m.events.labels(t)
        for reason in DEADLETTER_REASONS:
            m.deadlettered.labels(reason)
        for kind in DUPLICATE_KINDS:
            m.duplicates.labels(kind)
        for name in metric_names:
            for sev in SEVERITIES:
                for status in STATUSES:
                    m.alerts.labels(name, sev, status)
        return m
