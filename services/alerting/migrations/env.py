"""Alembic's environment for the alert store: run by ``services.alerting.schema`` on
the connection it holds (``config.attributes["connection"]``), or, for
``alembic revision --autogenerate`` while developing, on OPSWATCH_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from services.alerting.store import metadata
from services.common.config import OpswatchSettings


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        with create_engine(OpswatchSettings().database_url).begin() as own:
            context.configure(connection=own, target_metadata=metadata)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


run()
