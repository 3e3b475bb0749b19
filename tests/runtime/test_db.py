"""Migrations on SQLite and PostgreSQL match the tables the code declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from idp.runtime.db import all_metadata, current_revision, make_engine, upgrade


def test_migrations_create_every_declared_table(migrated_engine: Any) -> None:
    tables = set(inspect(migrated_engine).get_table_names())
    for md in all_metadata():
        assert set(md.tables) <= tables


def test_migrations_match_the_declared_schema(migrated_engine: Any) -> None:
    combined = MetaData()
    for md in all_metadata():
        for table in md.tables.values():
            table.to_metadata(combined)
    with migrated_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), combined)
    # Index and nullability drift would show here; type affinity noise on SQLite is ignored.
    significant = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column",
                                               "remove_column", "add_index", "remove_index")]
    assert significant == []


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        first = current_revision(engine)
        upgrade(engine)
        assert current_revision(engine) == first is not None
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_the_tests_copied_schema_is_the_migrations_own(tmp_path: Any) -> None:
    """``tests.fixtures.schema.migrate`` (the fixtures' fresh SQLite databases)
    gives exactly what the migrations give: every table, index and trigger as
    written, the revision stamp, WAL mode; and a database that is not empty is
    migrated, not overwritten."""
    from tests.fixtures.schema import migrate

    def schema(engine: Any) -> list[Any]:
        with engine.connect() as conn:
            return list(conn.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"))

    engines = {name: make_engine(f"sqlite:///{tmp_path / name}.db")
               for name in ("real", "first", "copy", "kept")}
    try:
        upgrade(engines["real"])
        migrate(engines["first"])  # the process's first (migrated), or already a copy
        migrate(engines["copy"])  # a copy for sure
        expected = schema(engines["real"])
        assert len(expected) > 50
        for name in ("first", "copy"):
            engine = engines[name]
            assert schema(engine) == expected
            assert current_revision(engine) == current_revision(engines["real"])
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        with engines["kept"].begin() as conn:
            conn.exec_driver_sql("CREATE TABLE mine (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO mine VALUES (7)")
        migrate(engines["kept"])
        with engines["kept"].connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM mine").scalar() == 7
        assert current_revision(engines["kept"]) == current_revision(engines["real"])
    finally:
        for engine in engines.values():
            engine.dispose()
