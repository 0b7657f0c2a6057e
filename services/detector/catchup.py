"""Reading again what a restored snapshot missed.

A stage's snapshot is taken every few seconds while the consumer group commits
offsets every second, so a worker that takes a partition over (after a crash or
a rebalance) restores a snapshot that may lie behind the committed offset. The
records between the two were applied by the previous owner, but not to the
state now restored (or, when there was no snapshot yet, to the empty state):
they are read here, with a consumer of their own outside the group, from the
position after the snapshot's (the partition's first offset without one) to the
committed offset, and applied before the partition's stream resumes. Records the
stream then redelivers at or below the snapshot's position are skipped by the
stage itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.connection import KafkaConnection

log = logging.getLogger(__name__)


class CatchUp:
    """A consumer outside the group: the group's committed offsets, and ranges of records."""

    def __init__(self, kafka: KafkaConnection, group: str) -> None:
        self._consumer = AIOKafkaConsumer(
            **kafka.client(
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=f"{group}-catch-up",
            )
        )

    async def __aenter__(self) -> CatchUp:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def committed(self, tps: list[TopicPartition]) -> Mapping[TopicPartition, int]:
        """The group's committed offset of each partition that has one."""
        self._consumer.assign(tps)
        found = {tp: await self._consumer.committed(tp) for tp in tps}
        return {tp: offset for tp, offset in found.items() if offset is not None}

    async def records(
        self, tp: TopicPartition, start: int, stop: int
    ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """The records of one partition from ``start`` up to (not including) ``stop``."""
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        position = start
        while position < stop:
            batch = await self._consumer.getmany(tp, timeout_ms=1000, max_records=2000)
            for record in batch.get(tp, []):
                if record.offset >= stop:
                    return
                position = record.offset + 1
                yield record
            if not batch:
                position = await self._consumer.position(tp)  # compacted or deleted away
