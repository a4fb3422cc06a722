"""Alembic migrations, run in-process at start and by ``autoheal db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from receiver.db.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed number: replicas starting together take turns through the upgrade.
_PG_LOCK_ID = 0x6175746F6865616C


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(db: Database) -> None:
    """Bring the schema to head; safe to run twice and from two replicas at once."""
    async with db.transaction() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(db: Database) -> str | None:
    async with db.reading() as conn:
        revision: str | None = await conn.run_sync(_current)
        return revision
