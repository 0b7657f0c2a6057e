"""Answers by Idempotency-Key: a retried POST gets the first answer again instead of
producing its events twice.

``Replays`` keeps them in the process (one replica). ``SharedReplays`` keeps them in
a database every replica reaches (the alert store's, ``idempotency_keys``), so a
retry that a load balancer sends to another replica finds the answer too:

- the first request with a key claims it (a row with a lease) before producing,
  and writes its answer once Kafka has acknowledged every record;
- a request that finds the key claimed waits for the answer while the lease runs;
- a request that finds the lease run out (its replica died mid-request, or Kafka
  refused) resumes the work: the sink looks in Kafka for what the first attempt
  produced (its records carry the key) and produces only the rest.

Replicas hold no answers in memory; rows are deleted a day after their key was
first used, so the table holds at most a day of keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import create_engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool

from services.alerting.schema import prepare
from services.alerting.store import idempotency_keys as keys
from services.alerting.store import sqlite_transactions
from services.common.problems import ProblemError

log = logging.getLogger(__name__)

TTL_S = 86_400.0
LEASE_S = 30.0  # longer than a request can take (Kafka's acknowledgement waits 15 s at most)
POLL_S = 0.1
PRUNE_EVERY_S = 600.0


def reused() -> ProblemError:
    return ProblemError(
        422,
        "Idempotency-Key reused",
        "this key was used before for a request with another body",
    )


@dataclass(frozen=True)
class Claim:
    """The first answer to give again, or none: this request does the work, resuming
    an attempt that began at ``resume_since`` (epoch seconds) when it is set."""

    answer: bytes | None = None
    resume_since: float | None = None


class AnswerBook(Protocol):
    async def claim(self, key: str, digest: bytes) -> Claim: ...

    async def release(self, key: str, answer: bytes | None) -> None: ...


class Replays:
    """In this process, bounded in bytes; a request arriving while the first with its
    key is still at work waits for that answer."""

    def __init__(self, budget_bytes: int = 32 << 20, ttl_s: float = TTL_S) -> None:
        self.budget_bytes = budget_bytes
        self.ttl_s = ttl_s
        self._answers: OrderedDict[str, tuple[float, bytes, bytes]] = OrderedDict()
        self._held = 0
        self._working: dict[str, tuple[bytes, asyncio.Future[None]]] = {}

    async def claim(self, key: str, digest: bytes) -> Claim:
        while (working := self._working.get(key)) is not None:
            await asyncio.shield(working[1])
        found = self._answers.get(key)
        if found is not None and time.monotonic() - found[0] <= self.ttl_s:
            if found[1] != digest:
                raise reused()
            return Claim(found[2])
        self._working[key] = (digest, asyncio.get_running_loop().create_future())
        return Claim()

    async def release(self, key: str, answer: bytes | None) -> None:
        digest, done = self._working.pop(key)
        if answer is not None:
            if key in self._answers:
                self._held -= len(self._answers.pop(key)[2])
            self._answers[key] = (time.monotonic(), digest, answer)
            self._held += len(answer)
            while self._held > self.budget_bytes and self._answers:
                self._held -= len(self._answers.popitem(last=False)[1][2])
        done.set_result(None)


class SharedReplays:
    """In the database at ``url``, shared by every replica (see the module's text)."""

    def __init__(
        self, url: str, upgrade: bool = True, lease_s: float = LEASE_S, ttl_s: float = TTL_S
    ) -> None:
        self.engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sqlite_transactions(self.engine)
        prepare(self.engine, upgrade)
        self.owner = uuid.uuid4().hex
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self._pruned = 0.0

    async def claim(self, key: str, digest: bytes) -> Claim:
        while True:
            try:
                claim = await run_in_threadpool(self._try, key, digest.hex())
            except IntegrityError:  # another replica claimed it first: look again
                continue
            except OperationalError:
                raise ProblemError(
                    503,
                    "Idempotency store unavailable",
                    "the database of Idempotency-Keys did not answer; retry later",
                    headers={"Retry-After": "5"},
                ) from None
            if claim is not None:
                return claim
            await asyncio.sleep(POLL_S)

    def _try(self, key: str, digest: str) -> Claim | None:
        """The claim, or None while another request holds the key's lease."""
        now = time.time()
        if now - self._pruned > PRUNE_EVERY_S:
            self._pruned = now
            with self.engine.begin() as conn:
                conn.execute(delete(keys).where(keys.c.created_at < now - self.ttl_s))
        with self.engine.begin() as conn:
            row = conn.execute(select(keys).where(keys.c.key == key)).first()
            if row is not None and row.created_at < now - self.ttl_s:
                conn.execute(delete(keys).where(keys.c.key == key))
                row = None
            if row is None:
                conn.execute(
                    insert(keys).values(
                        key=key,
                        digest=digest,
                        owner=self.owner,
                        claimed_at=now,
                        lease_until=now + self.lease_s,
                        created_at=now,
                    )
                )
                return Claim()
            if row.digest != digest:
                raise reused()
            if row.answer is not None:
                return Claim(row.answer.encode())
            if row.lease_until > now:
                return None
            taken = conn.execute(
                update(keys)
                .where(
                    keys.c.key == key,
                    keys.c.owner == row.owner,
                    keys.c.lease_until == row.lease_until,
                )
                .values(owner=self.owner, lease_until=now + self.lease_s)
            )
            return Claim(resume_since=row.claimed_at) if taken.rowcount == 1 else None

    async def release(self, key: str, answer: bytes | None) -> None:
        """The answer for every replica; without one (the request failed), the lease
        ends now so that a retry resumes at once."""
        values: dict[str, object] = {"lease_until": 0.0}
        if answer is not None:
            values = {"answer": answer.decode(), "lease_until": time.time()}
        try:
            await run_in_threadpool(self._update, key, values)
        except OperationalError as exc:  # the lease runs out; a retry resumes from Kafka
            log.warning("the answer for Idempotency-Key %r was not stored: %s", key, exc.orig)

    def _update(self, key: str, values: dict[str, object]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(keys).where(keys.c.key == key, keys.c.owner == self.owner).values(**values)
            )
