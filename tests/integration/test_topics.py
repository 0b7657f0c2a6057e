"""Topics created with another partition count stop a service with a clear message,
instead of a detector that waits forever for partitions that are not there; topics
are created replicated as set, and existing ones that are not are named."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

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
    done = run_ingest(bootstrap, OPSWATCH_TOPIC_NAMESPACE=ns, OPSWATCH_KAFKA_PARTITIONS="4")
    assert done.returncode == 2
    assert "topic layout error" in done.stderr and "OPSWATCH_KAFKA_PARTITIONS is 4" in done.stderr


def run_ingest(bootstrap: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``opswatch run ingest`` with ``env``, to its end (a refusal ends it)."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "ingest"],
        env={**os.environ, "OPSWATCH_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_topics_are_created_replicated_as_set_and_others_are_named(bootstrap: str) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}"
    ensure_topics(
        KafkaConnection(bootstrap, replication_factor=1, min_insync_replicas=1), Topics(ns), 2
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in Topics(ns).all()]
        configs = admin.describe_configs(resources)["topic"]  # the values set on the topic
    finally:
        admin.close()
    assert {t: c["min.insync.replicas"]["value"] for t, c in configs.items()} == {
        t: "1" for t in Topics(ns).all()
    }
    asked = KafkaConnection(bootstrap, replication_factor=2, min_insync_replicas=2)
    with pytest.raises(TopicLayoutError) as refused:
        ensure_topics(asked, Topics(ns), 2)
    assert f"OPSWATCH_KAFKA_REPLICATION_FACTOR is 2 but {ns}.alerts has 1" in str(refused.value)
    assert f"OPSWATCH_KAFKA_MIN_INSYNC_REPLICAS is 2 but {ns}.alerts has 1" in str(refused.value)


def test_more_replicas_than_brokers_stop_a_service_by_name(bootstrap: str) -> None:
    done = run_ingest(
        bootstrap,
        OPSWATCH_TOPIC_NAMESPACE=f"t{uuid.uuid4().hex[:10]}",
        OPSWATCH_KAFKA_REPLICATION_FACTOR="3",
    )
    assert done.returncode == 2
    assert "topic layout error: the cluster refused to create" in done.stderr
    assert "OPSWATCH_KAFKA_REPLICATION_FACTOR=3" in done.stderr
