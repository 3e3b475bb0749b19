"""Alembic environment: runs on the connection ``idp.runtime.db.upgrade`` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from idp.runtime.db import all_metadata

config = context.config
target_metadata = all_metadata()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run()
