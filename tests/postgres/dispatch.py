"""``python -m tests.postgres.dispatch``: an alerting process's notification side alone
(the runtime the service builds from its settings, its dispatcher looping every 0.2 s)
until it is killed; the alerting service without its Kafka consumer and HTTP API."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from services.alerting.metrics import Metrics
from services.alerting.notify import Dispatcher
from services.alerting.runtime import build
from services.common import logs
from services.common.config import OpswatchSettings


def main() -> None:
    settings = OpswatchSettings()
    logs.configure(settings.log_level)
    runtime = build(settings)
    metrics = Metrics.create(CollectorRegistry(), list(runtime.senders))
    Dispatcher(runtime.book, runtime.senders, metrics, interval_s=0.2).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
