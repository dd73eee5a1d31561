"""Engines for SQLite (embedded default: WAL, busy timeout, foreign keys) and PostgreSQL, and the one-time,
race-free schema migration at start-up."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["MIGRATIONS_DIR", "make_engine", "migrate", "schema_lock", "schema_revision"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# An arbitrary, fixed key for PostgreSQL's advisory lock around migrations.
_MIGRATION_LOCK_KEY = 0x6272_6169_6E73


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL mode, a busy timeout and enforced foreign keys."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    # A bounded connect: a retry against an unreachable server waits seconds, not the operating system's timeout.
    return create_engine(u, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's schema lock: what creates tables (our migrations, Optuna's storage) runs under it, so
    several workers starting at the same moment do it once, one after another.

    PostgreSQL: a session advisory lock; SQLite: an exclusive lock on a file beside the database.
    """
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                # A connection lost meanwhile released the lock with it; its error must not hide the original one.
                with contextlib.suppress(SQLAlchemyError):
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                    conn.commit()
        return
    database = engine.url.database
    lock_path = Path(f"{database}.migrate.lock") if database and database != ":memory:" else None
    with lock_path.open("a") if lock_path else nullcontext() as lock_file:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if lock_file is not None:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision, once, even when several workers start at the same moment."""
    cfg = _alembic_config()
    with schema_lock(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_revision(engine: Engine) -> str | None:
    """The schema's current Alembic revision (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": "bs_alembic_version"}).get_current_revision()
