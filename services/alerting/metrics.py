"""The alerting service's metrics, created on the registry it is given."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

OUTCOMES = ("stored", "duplicate", "invalid")


@dataclass(frozen=True)
class Metrics:
    updates: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        m = cls(
            updates=Counter(
                "opswatch_alerting_alert_updates_total",
                "Alert updates consumed, by outcome (stored, duplicate, invalid).",
                ["outcome"],
                registry=registry,
            )
        )
        for outcome in OUTCOMES:
            m.updates.labels(outcome)
        return m
