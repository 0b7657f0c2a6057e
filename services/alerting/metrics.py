"""The alerting service's metrics, created on the registry it is given."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.alerting.store import AlertStore
from services.common.contracts import DIMENSIONS, slice_label

OUTCOMES = ("stored", "duplicate", "invalid", "failed")
NOTIFY_OUTCOMES = ("sent", "retried", "failed")
STATUSES = ("firing", "acknowledged", "resolved")
SEVERITIES = ("critical", "warning", "info")
SHAPED_MAX = 1000  # series of opswatch_alerting_alerts at most, whatever an incident's size
LABELS = ("true_positive", "false_positive", "expected")


def precision(labels: Mapping[str, int]) -> float | None:
    """Share of labelled alerts that were real (true positives and expected ones)."""
    real = labels.get("true_positive", 0) + labels.get("expected", 0)
    judged = real + labels.get("false_positive", 0)
    return real / judged if judged else None


class StoreCollector(Collector):
    """Alerts by status and label, and label-based precision, read at scrape time."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.store.counts()
        stored = GaugeMetricFamily(
            "opswatch_alerting_alerts_stored",
            "Stored alerts by status and severity.",
            labels=["status", "severity"],
        )
        held = counts.by_status_severity
        for status in STATUSES:
            for severity in SEVERITIES:
                stored.add_metric([status, severity], held.get((status, severity), 0))
        yield stored
        shaped = GaugeMetricFamily(
            "opswatch_alerting_alerts",
            "1 for every open alert, shaped like Prometheus' ALERTS (alertstate: firing or"
            f" acknowledged), for Grafana's alert panels and annotations; the {SHAPED_MAX}"
            " most recently updated.",
            labels=["alertname", "alertstate", "severity", "metric", "slice"],
        )
        for status, severity, metric, *dims in self.store.open_alerts(SHAPED_MAX):
            where = slice_label(dict(zip(DIMENSIONS, dims, strict=True)))
            shaped.add_metric(["OpswatchAnomaly", status, severity, metric, where], 1)
        yield shaped
        labelled = GaugeMetricFamily(
            "opswatch_alerting_labelled_alerts",
            "Alerts people labelled, by label.",
            labels=["label"],
        )
        for label in LABELS:
            labelled.add_metric([label], counts.by_label.get(label, 0))
        yield labelled
        value = precision(counts.by_label)
        yield GaugeMetricFamily(
            "opswatch_alerting_label_precision_ratio",
            "True positives and expected anomalies over all labelled alerts (NaN: none).",
            value=float("nan") if value is None else value,
        )


@dataclass(frozen=True)
class Metrics:
    updates: Counter
    notifications: Counter
    latency: Histogram
    outbox_depth: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, receivers: Sequence[str] = ()) -> Metrics:
        m = cls(
            updates=Counter(
                "opswatch_alerting_alert_updates_total",
                "Alert updates consumed, by outcome (stored, duplicate, invalid, failed).",
                ["outcome"],
                registry=registry,
            ),
            notifications=Counter(
                "opswatch_alerting_notifications_total",
                "Notification attempts by receiver and outcome (sent, retried, failed).",
                ["receiver", "outcome"],
                registry=registry,
            ),
            latency=Histogram(
                "opswatch_alerting_notification_latency_seconds",
                "From a notification's acceptance into the outbox to its delivery.",
                ["receiver"],
                buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
                registry=registry,
            ),
            outbox_depth=Gauge(
                "opswatch_alerting_outbox_depth",
                "Notifications accepted and not yet sent or given up.",
                registry=registry,
            ),
        )
        for outcome in OUTCOMES:
            m.updates.labels(outcome)
        m.add_receivers(receivers)
        return m

    def add_receivers(self, receivers: Iterable[str]) -> None:
        for receiver in receivers:
            for outcome in NOTIFY_OUTCOMES:
                self.notifications.labels(receiver, outcome)
            self.latency.labels(receiver)
