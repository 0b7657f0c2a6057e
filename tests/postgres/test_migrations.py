"""Schema migrations on SQLite and PostgreSQL: a store of the release before migrations,
full of rows, is recognised, stamped and upgraded with every row kept; a store a newer
release upgraded is refused; the migrations leave exactly the tables the code uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine

from services.alerting.schema import SchemaError, head
from services.alerting.store import AlertFilter, AlertStore, IncidentFilter, incidents, metadata

# The schema as the release before migrations created it (its create_all, frozen).
BEFORE_MIGRATIONS = """
CREATE TABLE alerts (
    id VARCHAR(32) NOT NULL, fingerprint VARCHAR(16) NOT NULL, metric VARCHAR(128) NOT NULL,
    region VARCHAR(64), channel VARCHAR(64), platform VARCHAR(64), status VARCHAR(16) NOT NULL,
    severity VARCHAR(16) NOT NULL, score FLOAT NOT NULL, started_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL, incident_id VARCHAR(32), label VARCHAR(16),
    body JSON NOT NULL, state JSON NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_alerts_fingerprint ON alerts (fingerprint);
CREATE INDEX ix_alerts_incident_id ON alerts (incident_id);
CREATE INDEX ix_alerts_started ON alerts (started_at, id);
CREATE TABLE deliveries (
    receiver VARCHAR(64) NOT NULL, incident_id VARCHAR(32) NOT NULL, ref JSON NOT NULL,
    PRIMARY KEY (receiver, incident_id));
CREATE TABLE incidents (
    id VARCHAR(32) NOT NULL, family VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL,
    severity VARCHAR(16) NOT NULL, opened_at VARCHAR(32) NOT NULL,
    updated_at VARCHAR(32) NOT NULL, resolved_at VARCHAR(32), active BOOLEAN NOT NULL,
    body JSON NOT NULL, state JSON NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_incidents_active ON incidents (active);
CREATE INDEX ix_incidents_opened ON incidents (opened_at, id);
CREATE TABLE opswatch_meta ("key" VARCHAR(32) NOT NULL, value VARCHAR(64), PRIMARY KEY ("key"));
CREATE TABLE outbox (
    id {serial} NOT NULL, dedupe VARCHAR(200) NOT NULL, receiver VARCHAR(64) NOT NULL,
    incident_id VARCHAR(32) NOT NULL, kind VARCHAR(16) NOT NULL, payload JSON NOT NULL,
    created_at VARCHAR(32) NOT NULL, due_at VARCHAR(32) NOT NULL, attempts INTEGER NOT NULL,
    claimed_until VARCHAR(32), claimed_by VARCHAR(32), done BOOLEAN NOT NULL,
    outcome VARCHAR(16), detail VARCHAR(500), PRIMARY KEY (id), UNIQUE (dedupe));
CREATE INDEX ix_outbox_done ON outbox (done);
INSERT INTO opswatch_meta ("key", value) VALUES ('schema', '2');
"""

ALERTS = 30
INCIDENTS = 6


def alert_id(i: int) -> str:
    return f"{i:032x}"


def incident_id(i: int) -> str:
    return f"{0xFFFF0000 + i:032x}"


def fill_before_migrations(engine: Engine) -> None:
    """The release before migrations' schema, with alerts, incidents, outbox rows and
    Slack references in it."""
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as conn:
        for statement in BEFORE_MIGRATIONS.format(serial=serial).split(";"):
            if statement.strip():
                conn.execute(text(statement))
        for i in range(INCIDENTS):
            body: dict[str, Any] = {
                "id": incident_id(i),
                "family": "conversion",
                "status": "firing",
                "title": f"gmv dropped in region=r{i}",
            }
            conn.execute(
                text(
                    "INSERT INTO incidents VALUES (:id, 'conversion', 'firing', 'critical',"
                    " :at, :at, NULL, :active, :body, :state)"
                ),
                {
                    "id": incident_id(i),
                    "at": f"2026-03-0{i + 1}T17:00:00Z",
                    "active": i % 2 == 0,
                    "body": orjson.dumps(body).decode(),
                    "state": orjson.dumps({"id": incident_id(i), "n": i}).decode(),
                },
            )
        for i in range(ALERTS):
            body = {"id": alert_id(i), "metric": "gmv", "n": i}
            conn.execute(
                text(
                    "INSERT INTO alerts VALUES (:id, :fp, 'gmv', 'na', NULL, 'web', 'firing',"
                    " 'warning', :score, :at, :at, :incident, NULL, :body, '{}')"
                ),
                {
                    "id": alert_id(i),
                    "fp": f"{i:016x}",
                    "score": float(i),
                    "at": f"2026-03-02T17:{i:02d}:00Z",
                    "incident": incident_id(i % INCIDENTS),
                    "body": orjson.dumps(body).decode(),
                },
            )
        for i in range(INCIDENTS * 2):
            conn.execute(
                text(
                    "INSERT INTO outbox (dedupe, receiver, incident_id, kind, payload,"
                    " created_at, due_at, attempts, done) VALUES (:dedupe, 'hook', :incident,"
                    " 'open', :payload, '2026-03-02T17:00:00Z', '2026-03-02T17:00:00Z', 0, :done)"
                ),
                {
                    "dedupe": f"hook:{i}",
                    "incident": incident_id(i % INCIDENTS),
                    "payload": orjson.dumps({"n": i}).decode(),
                    "done": i % 3 == 0,
                },
            )
        conn.execute(
            text("INSERT INTO deliveries VALUES ('slack', :incident, :ref)"),
            {"incident": incident_id(0), "ref": '{"channel": "C0OPS", "ts": "1.000001"}'},
        )


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_a_store_from_before_migrations_is_stamped_upgraded_and_keeps_every_row(
    store_url: str,
) -> None:
    engine = create_engine(store_url)
    fill_before_migrations(engine)
    assert revision(engine) is None
    store = AlertStore(store_url)
    assert revision(engine) == head()
    alerts, _ = store.list_alerts(AlertFilter(), 1000)
    assert sorted(a["id"] for a in alerts) == [alert_id(i) for i in range(ALERTS)]
    assert store.get(alert_id(7)) == {"id": alert_id(7), "metric": "gmv", "n": 7}
    listed, _ = store.list_incidents(IncidentFilter(), 1000)
    assert sorted(i["id"] for i in listed) == [incident_id(i) for i in range(INCIDENTS)]
    assert len(store.list_alerts(AlertFilter(incident_id=incident_id(2)), 1000)[0]) == 5
    # titles from before revision 0004 are searchable
    found, _ = store.list_incidents(IncidentFilter(q="REGION=R3"), 1000)
    assert [i["id"] for i in found] == [incident_id(3)]
    rows = store.outbox_rows()
    assert [(r["dedupe"], r["payload"], r["done"]) for r in rows] == [
        (f"hook:{i}", {"n": i}, i % 3 == 0) for i in range(INCIDENTS * 2)
    ]
    assert store.outbox_depth() == 8
    assert store.delivery("slack", incident_id(0)) == {"channel": "C0OPS", "ts": "1.000001"}
    with store.engine.connect() as conn:
        active = conn.execute(select(incidents.c.id).where(incidents.c.active)).scalars()
        assert set(active) == {incident_id(i) for i in (0, 2, 4)}
    store.engine.dispose()
    engine.dispose()


def test_migrations_leave_exactly_the_tables_the_code_uses(store_url: str) -> None:
    store = AlertStore(store_url)
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    store.engine.dispose()


def test_a_store_a_newer_release_upgraded_is_refused_with_what_to_do(store_url: str) -> None:
    AlertStore(store_url).engine.dispose()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    with pytest.raises(SchemaError, match="at schema revision ffff, newer than this opswatch"):
        AlertStore(store_url)
    engine.dispose()


def db_upgrade(store_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "db", "upgrade"],
        env={"OPSWATCH_DATABASE_URL": store_url, "PATH": "/usr/bin:/bin"},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_service_told_not_to_upgrade_refuses_and_db_upgrade_stamps_and_upgrades(
    store_url: str, tmp_path: Path
) -> None:
    with pytest.raises(SchemaError, match="run `opswatch db upgrade`"):
        AlertStore(store_url, upgrade=False)
    engine = create_engine(store_url)
    fill_before_migrations(engine)
    done = db_upgrade(store_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "a store from before migrations (stamped as revision 0001)" in done.stdout
    assert revision(engine) == head()
    store = AlertStore(store_url, upgrade=False)
    assert len(store.list_alerts(AlertFilter(), 1000)[0]) == ALERTS
    again = db_upgrade(store_url, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    store.engine.dispose()
    engine.dispose()
