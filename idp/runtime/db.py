"""The database: SQLAlchemy 2 engine and session factory, Alembic migrations.

SQLite (WAL) in the home by default; any ``postgresql+psycopg://`` URL works.
Each package defines its tables on its own ``MetaData`` at its edge
(``pki.store``, ``idp.runtime.outbox``, ...); the one migration history lives in
``idp/runtime/migrations`` and is applied by ``govtrust init`` and ``govtrust db upgrade``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the pragmas GovTrust relies on for SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # Every checkout is pinged (one round trip): a pool of connections that a
    # failover cut all at once is then dropped as a whole and reconnected through
    # the multi-host URL. A ping only after an idle second (tried for issuance's
    # sake) let the switchover test see a 500 among its 503s, so it was taken out.
    return create_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def all_metadata() -> list[MetaData]:
    """Every package's tables, for Alembic's autogenerate and for checks."""
    from idp.runtime.outbox import metadata as outbox_md
    from pki.audit_store import metadata as audit_md

    mds = [audit_md, outbox_md]
    try:  # later packages register their tables here as they appear
        from pki.store import metadata as pki_md

        mds.append(pki_md)
    except ImportError:
        pass
    try:
        from idp.oidc.tables import metadata as idp_md

        mds.append(idp_md)
    except ImportError:
        pass
    try:
        from idp.login.otp_store import metadata as strong_md

        mds.append(strong_md)
    except ImportError:
        pass
    from pki.kmc_store import metadata as kmc_md

    mds.append(kmc_md)
    return mds


def alembic_config(url: str) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on ``engine``'s database."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
