"""The detector's metrics, created on the registry it is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.contracts import EVENT_TYPES

SEVERITIES = ("critical", "warning", "info")
STATUSES = ("firing", "resolved")


@dataclass(frozen=True)
class Metrics:
    events: Counter
    late: Counter
    undecodable: Counter
    windows: Counter
    alerts: Counter
    restore_seconds: Histogram
    evaluated_until: Gauge
    tracked_slices: Gauge
    late_partials: Gauge
    unjudged: Gauge
    warming: Gauge

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
            undecodable=Counter(
                "opswatch_detector_undecodable_events_total",
                "Records on the event topics that are not valid events.",
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
                "Slices stage two tracks (has baselines for), by partition.",
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
                "Slice-windows the cardinality guard left unjudged since the partition's"
                " state began, by partition and reason (low_volume: the slice has not"
                " shown OPSWATCH_MIN_SLICE_VOLUME yet; max_slices: OPSWATCH_MAX_SLICES"
                " are tracked already).",
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
        )
        for t in EVENT_TYPES:
            m.events.labels(t)
        for name in metric_names:
            for sev in SEVERITIES:
                for status in STATUSES:
                    m.alerts.labels(name, sev, status)
        return m
