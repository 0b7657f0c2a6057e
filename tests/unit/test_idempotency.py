"""Answers by Idempotency-Key shared by ingest replicas through a database (SQLite and
PostgreSQL): each replica here is a SharedReplays of its own over the same store."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.common.problems import ProblemError
from services.ingest.keys import Claim, SharedReplays

BODY = b"sha256 of a body"


def replicas(url: str, n: int = 2, lease_s: float = 30.0) -> list[SharedReplays]:
    return [SharedReplays(url, lease_s=lease_s) for _ in range(n)]


def test_a_retry_at_another_replica_gets_the_first_answer(store_url: str) -> None:
    a, b = replicas(store_url)

    async def scenario() -> tuple[Claim, Claim]:
        first = await a.claim("k-1", BODY)
        await a.release("k-1", b'{"accepted": 3}')
        return first, await b.claim("k-1", BODY)

    first, again = asyncio.run(scenario())
    assert first == Claim()
    assert again == Claim(answer=b'{"accepted": 3}')


def test_a_retry_arriving_while_the_first_is_at_work_waits_for_its_answer(
    store_url: str,
) -> None:
    a, b = replicas(store_url)

    async def scenario() -> tuple[Claim, float]:
        await a.claim("k-2", BODY)
        waiting = asyncio.create_task(b.claim("k-2", BODY))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        released = time.monotonic()
        await a.release("k-2", b"answer")
        return await waiting, time.monotonic() - released

    claim, after = asyncio.run(scenario())
    assert claim == Claim(answer=b"answer")
    assert after < 2.0


def test_the_same_key_with_another_body_is_refused_at_every_replica(store_url: str) -> None:
    a, b = replicas(store_url)

    async def scenario() -> None:
        await a.claim("k-3", BODY)
        await a.release("k-3", b"answer")
        await b.claim("k-3", b"another body")

    with pytest.raises(ProblemError) as refused:
        asyncio.run(scenario())
    assert refused.value.status == 422


def test_a_replica_that_died_mid_request_is_resumed_by_another_after_its_lease(
    store_url: str,
) -> None:
    a, b = replicas(store_url, lease_s=1.0)

    async def scenario() -> tuple[float, Claim, float]:
        started = time.time()
        await a.claim("k-4", BODY)  # and dies: never released
        claim = await b.claim("k-4", BODY)
        return started, claim, time.time() - started

    started, claim, waited = asyncio.run(scenario())
    assert claim.answer is None and claim.resume_since is not None
    assert abs(claim.resume_since - started) < 0.5
    assert 1.0 <= waited < 3.0


def test_a_failed_request_is_resumed_at_once_by_its_retry(store_url: str) -> None:
    a, b = replicas(store_url)

    async def scenario() -> tuple[Claim, float]:
        await a.claim("k-5", BODY)
        await a.release("k-5", None)  # Kafka refused: 503
        asked = time.monotonic()
        return await b.claim("k-5", BODY), time.monotonic() - asked

    claim, waited = asyncio.run(scenario())
    assert claim.answer is None and claim.resume_since is not None
    assert waited < 1.0


def test_keys_are_forgotten_after_their_time_to_live(store_url: str) -> None:
    a = SharedReplays(store_url, ttl_s=0.5)

    async def scenario() -> Claim:
        await a.claim("k-6", BODY)
        await a.release("k-6", b"answer")
        await asyncio.sleep(0.6)
        return await a.claim("k-6", b"a new body for an old key")

    assert asyncio.run(scenario()) == Claim()
