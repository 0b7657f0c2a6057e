"""The alert store: alerts, incidents, the notification outbox, in one database.

SQLite by default, PostgreSQL through ``OPSWATCH_DATABASE_URL``; the tables below
are what the newest migration (``schema``) leaves. Rows keep the
lifecycle state as JSON beside the columns that queries filter on; the logic
that moves them lives in ``lifecycle`` and ``incidents`` and in ``book``,
which calls these methods inside one transaction per change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from services.alerting import incidents as inc
from services.alerting import lifecycle
from services.alerting.lifecycle import AlertState, iso
from services.alerting.schema import prepare
from services.common.contracts import DIMENSIONS

BOOK_LOCK = 0x6F707377  # "opsw": the advisory lock that makes the book's changes serial
RETENTION_DAYS = 7  # sent or failed outbox rows are kept this long
SERIES_KEPT = 288  # windows of an alert's series kept (a day of five-minute windows)

metadata = MetaData()
meta = Table(
    "opswatch_meta",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(64)),
)
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
    Column("incident_id", String(32), index=True),
    Column("label", String(16)),
    Column("body", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Index("ix_alerts_started", "started_at", "id"),
)
incidents = Table(
    "incidents",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("family", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("opened_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    Column("resolved_at", String(32)),
    Column("active", Boolean, nullable=False, index=True),
    Column("title", String(300)),
    Column("body", JSON, nullable=False),
    Column("state", JSON, nullable=False),
    Index("ix_incidents_opened", "opened_at", "id"),
)
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedupe", String(200), nullable=False, unique=True),
    Column("receiver", String(64), nullable=False),
    Column("incident_id", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("due_at", String(32), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_until", String(32)),
    Column("claimed_by", String(32)),
    Column("done", Boolean, nullable=False, default=False, index=True),
    Column("outcome", String(16)),
    Column("detail", String(500)),
)
deliveries = Table(
    "deliveries",
    metadata,
    Column("receiver", String(64), primary_key=True),
    Column("incident_id", String(32), primary_key=True),
    Column("ref", JSON, nullable=False),
)
# each alert's windows, [window_start, observed, expected, low, high, anomalous], oldest first
alert_series = Table(
    "alert_series",
    metadata,
    Column("alert_id", String(32), primary_key=True),
    Column("points", JSON, nullable=False),
)
# what responders learn about an incident: its cause, what was done, lessons
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(32), nullable=False, index=True),
    Column("author", String(100), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
)
# ingest's answers by Idempotency-Key, when replicas share them (services.ingest.keys)
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("answer", Text),
    Column("owner", String(32), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("lease_until", Float, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
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
    incident_id: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class IncidentFilter:
    status: str | None = None
    severity: str | None = None
    family: str | None = None
    since: str | None = None
    until: str | None = None
    q: str | None = None  # in the title or a note, whatever the case


@dataclass(frozen=True)
class OutboxRow:
    id: int
    receiver: str
    incident_id: str
    kind: str
    payload: Mapping[str, Any]
    created_at: str
    attempts: int
    token: str = ""
    dedupe: str = ""  # the notification's identity, the same on every attempt


@dataclass(frozen=True)
class AlertCounts:
    by_status_severity: Mapping[tuple[str, str], int]
    by_label: Mapping[str, int]  # unlabelled as "none"

    @property
    def by_status(self) -> dict[str, int]:
        return self._total(0)

    @property
    def by_severity(self) -> dict[str, int]:
        return self._total(1)

    def _total(self, position: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, n in self.by_status_severity.items():
            out[key[position]] = out.get(key[position], 0) + n
        return out


class CursorError(ValueError):
    pass


# A page token is the position after the last item: its time and id. Any token
# of this shape is a position, so a well-formed token is never refused.
PAGE_TOKEN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z~[0-9a-f]{32}$"


def encode_cursor(started_at: str, row_id: str) -> str:
    return f"{started_at}~{row_id}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    if not re.fullmatch(PAGE_TOKEN, cursor):
        raise CursorError("page token is not one this API issued")
    started_at, row_id = cursor.split("~")
    return started_at, row_id


def sqlite_transactions(engine: Engine) -> None:
    """Real transactions on SQLite: pysqlite's own begins late (at the first write),
    so a read-then-write races and a savepoint's release commits. Every transaction
    here takes the write lock at its start (``BEGIN IMMEDIATE``), so changes are
    serial, as the advisory lock makes them on PostgreSQL."""

    @event.listens_for(engine, "connect")
    def _on_connect(conn: Any, _: Any) -> None:
        conn.isolation_level = None
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _page(
    conn: Connection,
    table: Table,
    order: str,
    conds: list[Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first by ``order`` then id; the token continues after the last item."""
    col = table.c[order]
    if cursor is not None:
        at, row_id = decode_cursor(cursor)
        conds.append(or_(col < at, and_(col == at, table.c.id < row_id)))
    query = (
        select(table.c.body, col, table.c.id)
        .where(*conds)
        .order_by(col.desc(), table.c.id.desc())
        .limit(limit + 1)
    )
    rows = conn.execute(query).all()
    token = None
    if len(rows) > limit:
        last = rows[limit - 1]
        token = encode_cursor(last[1], last.id)
    return [dict(r.body) for r in rows[:limit]], token


def _note(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "author", "kind", "text", "created_at")}


class AlertStore:
    """``upgrade``: bring an older schema to this release's (else refuse it, see
    ``schema.prepare``)."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        self.url = url
        self.engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sqlite_transactions(self.engine)
        prepare(self.engine, upgrade)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One change of the book: serial with every other one, in every replica."""
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BOOK_LOCK})
            yield conn

    # alerts

    def latest_for(self, conn: Connection, fingerprint: str) -> tuple[AlertState, str] | None:
        row = conn.execute(
            select(alerts.c.state, alerts.c.incident_id)
            .where(alerts.c.fingerprint == fingerprint)
            .order_by(alerts.c.started_at.desc(), alerts.c.id.desc())
            .limit(1)
        ).first()
        return (lifecycle.load(row.state), row.incident_id) if row else None

    def alert_state(self, conn: Connection, alert_id: str) -> tuple[AlertState, str] | None:
        row = conn.execute(
            select(alerts.c.state, alerts.c.incident_id).where(alerts.c.id == alert_id)
        ).first()
        return (lifecycle.load(row.state), row.incident_id) if row else None

    def alert_states(self, conn: Connection, ids: Sequence[str]) -> list[AlertState]:
        rows = conn.execute(select(alerts.c.state).where(alerts.c.id.in_(list(ids)))).all()
        return [lifecycle.load(r.state) for r in rows]

    def save_alert(
        self, conn: Connection, state: AlertState, incident_id: str, body: Mapping[str, Any]
    ) -> None:
        row = {
            "fingerprint": state.latest["fingerprint"],
            "metric": state.latest["metric"],
            **{d: state.latest["slice"].get(d) for d in DIMENSIONS},
            "status": state.status,
            "severity": state.peak_severity,
            "score": state.peak_score,
            "started_at": iso(state.started_at),
            "updated_at": iso(state.updated_at),
            "incident_id": incident_id,
            "label": state.label,
            "body": dict(body),
            "state": lifecycle.dump(state),
        }
        done = conn.execute(alerts.update().where(alerts.c.id == state.id).values(**row))
        if done.rowcount == 0:
            conn.execute(alerts.insert().values(id=state.id, **row))

    def add_series(self, conn: Connection, alert_id: str, points: Sequence[Sequence[Any]]) -> None:
        """Merge windows into an alert's series: a window seen again takes the newer
        values, and stays anomalous once it was (a reopened alert's first update
        carries earlier anomalous windows as history); the newest ``SERIES_KEPT``
        are kept."""
        held = conn.execute(
            select(alert_series.c.points).where(alert_series.c.alert_id == alert_id)
        ).scalar()
        merged = {p[0]: list(p) for p in (held or [])}
        for p in points:
            before = merged.get(p[0])
            merged[p[0]] = [*p[:5], bool(p[5]) or bool(before and before[5])]
        kept = [merged[k] for k in sorted(merged)][-SERIES_KEPT:]
        if held is None:
            conn.execute(alert_series.insert().values(alert_id=alert_id, points=kept))
        else:
            conn.execute(
                update(alert_series).where(alert_series.c.alert_id == alert_id).values(points=kept)
            )

    def series(self, alert_id: str) -> list[list[Any]]:
        with self.engine.connect() as conn:
            points = conn.execute(
                select(alert_series.c.points).where(alert_series.c.alert_id == alert_id)
            ).scalar()
        return [list(p) for p in points or []]

    def members(self, incident: Mapping[str, Any]) -> list[tuple[dict[str, Any], list[list[Any]]]]:
        """An incident's alerts, in its order, each with its series."""
        ids = list(incident["alert_ids"])
        with self.engine.connect() as conn:
            found = select(alerts.c.id, alerts.c.body).where(alerts.c.id.in_(ids))
            bodies = {r.id: dict(r.body) for r in conn.execute(found)}
            held = select(alert_series).where(alert_series.c.alert_id.in_(ids))
            series = {r.alert_id: [list(p) for p in r.points] for r in conn.execute(held)}
        return [(bodies[i], series.get(i, [])) for i in ids if i in bodies]

    def get(self, alert_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            body = conn.execute(select(alerts.c.body).where(alerts.c.id == alert_id)).scalar()
        return dict(body) if body is not None else None

    def alerts_between(self, flt: AlertFilter) -> list[dict[str, Any]]:
        """Every alert the filter's time range and fields select, oldest first."""
        out: list[dict[str, Any]] = []
        token = None
        while True:
            items, token = self.list_alerts(flt, 500, token)
            out.extend(items)
            if token is None:
                return out[::-1]

    def list_alerts(
        self, flt: AlertFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        conds: list[Any] = []
        for column in ("status", "severity", "metric", *DIMENSIONS, "incident_id", "label"):
            value = getattr(flt, column)
            if value is not None:
                conds.append(alerts.c[column] == value)
        if flt.since is not None:
            conds.append(alerts.c.updated_at >= flt.since)
        if flt.until is not None:
            conds.append(alerts.c.started_at <= flt.until)
        with self.engine.connect() as conn:
            return _page(conn, alerts, "started_at", conds, limit, cursor)

    # incidents

    def candidate_incidents(self, conn: Connection, family: str) -> list[inc.IncidentState]:
        rows = conn.execute(
            select(incidents.c.state)
            .where(incidents.c.family == family)
            .order_by(incidents.c.opened_at.desc())
            .limit(50)
        ).all()
        return [inc.load(r.state) for r in rows]

    def incident_state(self, conn: Connection, incident_id: str) -> inc.IncidentState | None:
        state = conn.execute(
            select(incidents.c.state).where(incidents.c.id == incident_id)
        ).scalar()
        return inc.load(state) if state is not None else None

    def active_incidents(self, conn: Connection) -> list[inc.IncidentState]:
        rows = conn.execute(select(incidents.c.state).where(incidents.c.active)).all()
        return [inc.load(r.state) for r in rows]

    def save_incident(
        self,
        conn: Connection,
        state: inc.IncidentState,
        summary: inc.Summary,
        body: Mapping[str, Any],
    ) -> None:
        told = (state.notified_status, state.pushed_status)
        row = {
            "family": state.family,
            "status": summary.status,
            "severity": summary.severity,
            "opened_at": iso(state.opened_at),
            "updated_at": body["updated_at"],
            "resolved_at": body["resolved_at"],
            "active": summary.status != "resolved"
            or any(t in ("firing", "acknowledged") for t in told),
            "title": str(body["title"])[:300],
            "body": dict(body),
            "state": inc.dump(state),
        }
        done = conn.execute(incidents.update().where(incidents.c.id == state.id).values(**row))
        if done.rowcount == 0:
            conn.execute(incidents.insert().values(id=state.id, **row))

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        """The incident as the API serves it, with its notes."""
        with self.engine.connect() as conn:
            body = conn.execute(
                select(incidents.c.body).where(incidents.c.id == incident_id)
            ).scalar()
            if body is None:
                return None
            return {**body, "notes": self._notes(conn, [incident_id]).get(incident_id, [])}

    def resolved_of_family(
        self, family: str, limit: int = 200, conn: Connection | None = None
    ) -> list[dict[str, Any]]:
        """The family's most recently opened resolved incidents, each with its notes
        and its alerts' labels (in ``conn``'s transaction when given)."""
        if conn is None:
            with self.engine.connect() as own:
                return self.resolved_of_family(family, limit, own)
        rows = conn.execute(
            select(incidents.c.body)
            .where(incidents.c.family == family, incidents.c.status == "resolved")
            .order_by(incidents.c.opened_at.desc())
            .limit(limit)
        ).all()
        ids = [r.body["id"] for r in rows]
        found = self._notes(conn, ids)
        labelled = conn.execute(
            select(alerts.c.incident_id, alerts.c.label).where(
                alerts.c.incident_id.in_(ids), alerts.c.label.is_not(None)
            )
        ).all()
        labels: dict[str, list[str]] = {}
        for incident_id, label in labelled:
            labels.setdefault(incident_id, []).append(label)
        return [
            {**r.body, "notes": found.get(r.body["id"], []), "labels": labels.get(r.body["id"], [])}
            for r in rows
        ]

    def add_note(
        self, incident_id: str, author: str, kind: str, text_: str, now: datetime
    ) -> dict[str, Any] | None:
        """The note as stored; None when there is no such incident."""
        with self.transaction() as conn:
            found = conn.execute(select(incidents.c.id).where(incidents.c.id == incident_id))
            if found.first() is None:
                return None
            row = {
                "incident_id": incident_id,
                "author": author,
                "kind": kind,
                "text": text_,
                "created_at": iso(now),
            }
            done = conn.execute(notes.insert().values(**row))
            assert done.inserted_primary_key is not None
        return _note({"id": done.inserted_primary_key[0], **row})

    @staticmethod
    def _notes(conn: Connection, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        rows = conn.execute(
            select(notes).where(notes.c.incident_id.in_(list(ids))).order_by(notes.c.id)
        ).all()
        out: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r.incident_id, []).append(_note(dict(r._mapping)))
        return out

    def list_incidents(
        self, flt: IncidentFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        conds: list[Any] = []
        for column in ("status", "severity", "family"):
            value = getattr(flt, column)
            if value is not None:
                conds.append(incidents.c[column] == value)
        if flt.since is not None:
            conds.append(incidents.c.updated_at >= flt.since)
        if flt.until is not None:
            conds.append(incidents.c.opened_at <= flt.until)
        if flt.q:
            q = flt.q.lower()
            noted = select(notes.c.incident_id).where(
                func.lower(notes.c.text).contains(q, autoescape=True)
            )
            conds.append(
                or_(
                    func.lower(incidents.c.title).contains(q, autoescape=True),
                    incidents.c.id.in_(noted),
                )
            )
        with self.engine.connect() as conn:
            items, token = _page(conn, incidents, "opened_at", conds, limit, cursor)
            found = self._notes(conn, [i["id"] for i in items])
        return [{**i, "notes": found.get(i["id"], [])} for i in items], token

    def incidents_between(self, since: str, until: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(incidents.c.body)
                .where(incidents.c.updated_at >= since, incidents.c.opened_at <= until)
                .order_by(incidents.c.opened_at)
            ).all()
        return [dict(r.body) for r in rows]

    # outbox

    def enqueue(
        self,
        conn: Connection,
        dedupe: str,
        receiver: str,
        incident_id: str,
        kind: str,
        payload: Mapping[str, Any],
        now: datetime,
    ) -> bool:
        """Accept a notification; False when the same one was accepted before."""
        try:
            with conn.begin_nested():
                conn.execute(
                    outbox.insert().values(
                        dedupe=dedupe,
                        receiver=receiver,
                        incident_id=incident_id,
                        kind=kind,
                        payload=dict(payload),
                        created_at=iso(now),
                        due_at=iso(now),
                        attempts=0,
                        done=False,
                    )
                )
        except IntegrityError:
            return False
        return True

    def supersede(self, conn: Connection, receiver: str, incident_id: str, kind: str) -> None:
        """Drop a receiver's pending rows of a kind for an incident (a newer snapshot
        replaces them; a row being sent right now is left to finish)."""
        conn.execute(
            update(outbox)
            .where(
                outbox.c.receiver == receiver,
                outbox.c.incident_id == incident_id,
                outbox.c.kind == kind,
                ~outbox.c.done,
                outbox.c.claimed_by.is_(None),
            )
            .values(done=True, outcome="superseded")
        )

    def claim(
        self, now: datetime, lease_s: float, token: str, kind: str | None = None
    ) -> OutboxRow | None:
        """The oldest due row, leased to ``token`` so that no other sender takes it.

        Only the oldest pending row of each (receiver, incident) is handed out, so
        a message's update never overtakes the message itself."""
        stamp = iso(now)
        until = iso(now + timedelta(seconds=lease_s))
        free = or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= stamp)
        with self.transaction() as conn:
            heads = (
                select(func.min(outbox.c.id))
                .where(~outbox.c.done)
                .group_by(outbox.c.receiver, outbox.c.incident_id)
            )
            conds = [outbox.c.id.in_(heads), outbox.c.due_at <= stamp, free]
            if kind is not None:
                conds.append(outbox.c.kind == kind)
            r = conn.execute(select(outbox).where(*conds).order_by(outbox.c.id).limit(1)).first()
            if r is None:
                return None
            conn.execute(
                update(outbox)
                .where(outbox.c.id == r.id)
                .values(claimed_until=until, claimed_by=token)
            )
        return OutboxRow(
            r.id,
            r.receiver,
            r.incident_id,
            r.kind,
            r.payload,
            r.created_at,
            r.attempts,
            token,
            r.dedupe,
        )

    def _release(self, row: OutboxRow, **values: Any) -> bool:
        """Update a claimed row if the lease is still ours; False when it was lost."""
        with self.transaction() as conn:
            done = conn.execute(
                update(outbox)
                .where(outbox.c.id == row.id, outbox.c.claimed_by == row.token)
                .values(claimed_until=None, claimed_by=None, **values)
            )
        return bool(done.rowcount)

    def finish(self, row: OutboxRow, outcome: str, detail: str | None = None) -> bool:
        return self._release(
            row, done=True, outcome=outcome, detail=detail, attempts=outbox.c.attempts + 1
        )

    def retry_at(self, row: OutboxRow, due: datetime, detail: str) -> bool:
        return self._release(row, due_at=iso(due), detail=detail, attempts=outbox.c.attempts + 1)

    def postpone(self, row: OutboxRow, due: datetime) -> bool:
        """Back in the queue until ``due``, without counting an attempt (pacing)."""
        return self._release(row, due_at=iso(due))

    def prune(self, now: datetime) -> int:
        """Forget sent, failed and superseded rows after the retention period."""
        cutoff = iso(now - timedelta(days=RETENTION_DAYS))
        with self.transaction() as conn:
            done = conn.execute(delete(outbox).where(outbox.c.done, outbox.c.created_at < cutoff))
        return int(done.rowcount)

    def outbox_depth(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(~outbox.c.done)).scalar() or 0)

    def notifications(self, incident_id: str) -> list[dict[str, Any]]:
        """An incident's notifications, oldest first: receiver, kind, when accepted,
        outcome (None while pending) and attempts."""
        cols = (outbox.c.receiver, outbox.c.kind, outbox.c.created_at, outbox.c.outcome)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*cols, outbox.c.attempts)
                .where(outbox.c.incident_id == incident_id)
                .order_by(outbox.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def outbox_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).order_by(outbox.c.id)).all()
        return [dict(r._mapping) for r in rows]

    def delivery(self, receiver: str, incident_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            ref = conn.execute(
                select(deliveries.c.ref).where(
                    deliveries.c.receiver == receiver, deliveries.c.incident_id == incident_id
                )
            ).scalar()
        return dict(ref) if ref is not None else None

    def remember_delivery(self, receiver: str, incident_id: str, ref: Mapping[str, Any]) -> None:
        with self.transaction() as conn:
            done = conn.execute(
                update(deliveries)
                .where(deliveries.c.receiver == receiver, deliveries.c.incident_id == incident_id)
                .values(ref=dict(ref))
            )
            if done.rowcount == 0:
                conn.execute(
                    deliveries.insert().values(
                        receiver=receiver, incident_id=incident_id, ref=dict(ref)
                    )
                )

    # figures

    def counts(self) -> AlertCounts:
        """Alerts by status and severity, and by label, in two queries."""
        with self.engine.connect() as conn:
            held = conn.execute(
                select(alerts.c.status, alerts.c.severity, func.count()).group_by(
                    alerts.c.status, alerts.c.severity
                )
            ).all()
            labels = conn.execute(
                select(alerts.c.label, func.count()).group_by(alerts.c.label)
            ).all()
        return AlertCounts(
            {(status, severity): int(n) for status, severity, n in held},
            {(label if label is not None else "none"): int(n) for label, n in labels},
        )

    def open_alerts(
        self, limit: int
    ) -> list[tuple[str, str, str, str | None, str | None, str | None]]:
        """(status, severity, metric, region, channel, platform) of the open alerts,
        the most recently updated first, at most ``limit``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    alerts.c.status,
                    alerts.c.severity,
                    alerts.c.metric,
                    *(alerts.c[d] for d in DIMENSIONS),
                )
                .where(alerts.c.status != "resolved")
                .order_by(alerts.c.updated_at.desc())
                .limit(limit)
            ).all()
        return [tuple(r) for r in rows]
