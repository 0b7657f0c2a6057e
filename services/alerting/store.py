"""The alert store: one row per alert id, upserted, queried with filters and cursors.

SQLite by default, PostgreSQL through ``OPSWATCH_DATABASE_URL``. Every update
of an alert carries the same deterministic id, so replays and redeliveries
land on the same row; an update older than the stored one is ignored, so an
out-of-order redelivery never winds an alert back.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    event,
    or_,
    select,
)
from sqlalchemy.engine import Engine

from services.common.contracts import DIMENSIONS

metadata = MetaData()
alerts = Table(
    "alerts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("fingerprint", String(16), nullable=False, index=True),
    Column("metric", String(128), nullable=False),
    Column("region", String(64)),
    Column("channel", String(64)),
    Column("platform", String(64)),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("score", Float, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("windows", Integer),
    Column("body", JSON, nullable=False),
    Index("ix_alerts_started", "started_at", "id"),
)


@dataclass(frozen=True)
class AlertFilter:
    status: str | None = None
    severity: str | None = None
    metric: str | None = None
    region: str | None = None
    channel: str | None = None
    platform: str | None = None
    since: str | None = None
    until: str | None = None


class CursorError(ValueError):
    pass


def encode_cursor(started_at: str, alert_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([started_at, alert_id])).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        started_at, alert_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise CursorError("page token is not one this API issued") from None
    if not isinstance(started_at, str) or not isinstance(alert_id, str):
        raise CursorError("page token is not one this API issued")
    return started_at, alert_id


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(conn: Any, _: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


class AlertStore:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
        metadata.create_all(self.engine)

    def upsert(self, alert: Mapping[str, Any]) -> bool:
        """Store an alert update; False when it was a duplicate or older than the stored one."""
        row = {
            "id": alert["id"],
            "fingerprint": alert["fingerprint"],
            "metric": alert["metric"],
            **{d: alert["slice"].get(d) for d in DIMENSIONS},
            "status": alert["status"],
            "severity": alert["severity"],
            "score": alert["score"],
            "started_at": alert["started_at"],
            "updated_at": alert["updated_at"],
            "windows": alert.get("windows"),
            "body": dict(alert),
        }
        with self.engine.begin() as conn:
            stored = conn.execute(
                select(alerts.c.updated_at).where(alerts.c.id == row["id"])
            ).scalar()
            if stored is None:
                conn.execute(alerts.insert().values(**row))
                return True
            if stored >= row["updated_at"]:
                return False
            conn.execute(alerts.update().where(alerts.c.id == row["id"]).values(**row))
            return True

    def get(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            body = conn.execute(select(alerts.c.body).where(alerts.c.id == alert_id)).scalar()
        return dict(body) if body is not None else None

    def list(
        self, flt: AlertFilter, limit: int, cursor: str | None = None
    ) -> tuple[Sequence[dict[str, Any]], str | None]:
        """Newest first (by start, then id); the token continues after the last item."""
        query = select(alerts.c.body, alerts.c.started_at, alerts.c.id)
        conds = []
        for column in ("status", "severity", "metric", *DIMENSIONS):
            value = getattr(flt, column)
            if value is not None:
                conds.append(alerts.c[column] == value)
        if flt.since is not None:
            conds.append(alerts.c.updated_at >= flt.since)
        if flt.until is not None:
            conds.append(alerts.c.started_at <= flt.until)
        if cursor is not None:
            started_at, alert_id = decode_cursor(cursor)
            conds.append(
                or_(
                    alerts.c.started_at < started_at,
                    and_(alerts.c.started_at == started_at, alerts.c.id < alert_id),
                )
            )
        query = (
            query.where(*conds)
            .order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        items = [dict(r.body) for r in rows[:limit]]
        token = None
        if len(rows) > limit:
            last = rows[limit - 1]
            token = encode_cursor(last.started_at, last.id)
        return items, token
