"""The alert store's schema, versioned with Alembic (``migrations/``).

``prepare`` runs when the store opens and from ``opswatch db upgrade``: in one
transaction, serial with every other replica doing the same (an advisory lock on
PostgreSQL, SQLite's write lock), it recognises a store created before migrations
existed and stamps it as the first revision, refuses a store that a newer opswatch
has upgraded, and brings an older one to this release's revision (or, when told not
to upgrade, refuses it and names the command that does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST = "0001"
MIGRATION_LOCK = 0x6F70736D  # "opsm": one replica migrates at a time

log = logging.getLogger(__name__)


class SchemaError(RuntimeError):
    pass


@dataclass(frozen=True)
class Outcome:
    before: str | None  # the revision found; None for an empty database
    after: str
    stamped: bool  # a store from before migrations, recognised as the first revision

    def describe(self) -> str:
        found = "an empty database" if self.before is None else f"revision {self.before}"
        if self.stamped:
            found = f"a store from before migrations (stamped as revision {self.before})"
        if self.before == self.after:
            return f"the alert store is at revision {self.after}, this release's" + (
                f": {found}" if self.stamped else "; nothing to do"
            )
        return f"the alert store upgraded from {found} to revision {self.after}"


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def prepare(engine: Engine, upgrade: bool = True) -> Outcome:
    """The store at this release's revision, or SchemaError saying why it cannot be."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = _config(conn)
        script = ScriptDirectory.from_config(config)
        target = head()
        current = MigrationContext.configure(conn).get_current_revision()
        stamped = False
        if current is None:
            names = set(inspect(conn).get_table_names())
            if "alerts" in names and "opswatch_meta" not in names:
                raise SchemaError(
                    f"the database {_where(engine)} holds alerts of an older opswatch (no "
                    "incidents or lifecycle); point OPSWATCH_DATABASE_URL at a new database "
                    "or delete this one"
                )
            if "opswatch_meta" in names:
                command.stamp(config, FIRST)
                current, stamped = FIRST, True
        elif current not in {s.revision for s in script.walk_revisions()}:
            raise SchemaError(
                f"the alert store at {_where(engine)} is at schema revision {current}, "
                f"newer than this opswatch knows (its newest is {target}): a newer release "
                "has upgraded it; run that release (or newer) against it"
            )
        if current != target:
            if not upgrade:
                raise SchemaError(
                    f"the alert store at {_where(engine)} is at schema revision "
                    f"{current or 'none (empty)'}, this release needs {target}: run "
                    "`opswatch db upgrade` (or set OPSWATCH_DATABASE_UPGRADE=true)"
                )
            command.upgrade(config, target)
    outcome = Outcome(current, target, stamped)
    if current != target or stamped:  # alembic's own lines are kept quiet (logs.NOISY)
        log.info("%s", outcome.describe())
    return outcome
