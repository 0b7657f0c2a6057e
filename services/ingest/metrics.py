"""The ingest service's metrics, created on the registry it is given."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.contracts import EVENT_TYPES
from services.common.events import METRIC_NAMES_REASON

REJECT_REASONS = (
    "schema",
    "json",
    "unknown_type",
    "limits",
    "future",
    "duplicate",
    METRIC_NAMES_REASON,
)


@dataclass(frozen=True)
class Metrics:
    received: Counter
    rejected: Counter
    deadlettered: Counter
    produce_latency: Histogram
    request_duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        m = cls(
            received=Counter(
                "opswatch_ingest_events_received_total",
                "Valid events accepted and produced to Kafka, by event type.",
                ["type"],
                registry=registry,
            ),
            rejected=Counter(
                "opswatch_ingest_events_rejected_total",
                "Events rejected by validation, by event type and reason.",
                ["type", "reason"],
                registry=registry,
            ),
            deadlettered=Counter(
                "opswatch_ingest_deadlettered_total",
                "Rejected events written to the dead-letter topic.",
                registry=registry,
            ),
            produce_latency=Histogram(
                "opswatch_ingest_produce_latency_seconds",
                "Time to have a request's events acknowledged by Kafka.",
                registry=registry,
            ),
            request_duration=Histogram(
                "opswatch_ingest_request_duration_seconds",
                "Duration of POST /v1/events requests.",
                registry=registry,
            ),
        )
        for t in EVENT_TYPES:
            m.received.labels(t)
            for reason in REJECT_REASONS:
                m.rejected.labels(t, reason)
        for reason in REJECT_REASONS:
            m.rejected.labels("invalid", reason)
        return m
