"""Topics created with another partition count stop a service with a clear message,
instead of a detector that waits forever for partitions that are not there."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from services.common.connection import KafkaConnection
from services.common.events import Topics
from services.common.kafka import TopicLayoutError, ensure_topics
from tests.integration.conftest import REPO


def test_a_changed_partition_count_is_refused_by_name(bootstrap: str) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    ensure_topics(KafkaConnection(bootstrap), Topics(ns), 2)
    ensure_topics(KafkaConnection(bootstrap), Topics(ns), 2)  # the same layout again is fine
    with pytest.raises(TopicLayoutError, match=rf"is 4 but {ns}\.events\.activity has 2"):
        ensure_topics(KafkaConnection(bootstrap), Topics(ns), 4)
    env = {
        **os.environ,
        "OPSWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "OPSWATCH_TOPIC_NAMESPACE": ns,
        "OPSWATCH_KAFKA_PARTITIONS": "4",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "topic layout error" in done.stderr and "OPSWATCH_KAFKA_PARTITIONS is 4" in done.stderr
