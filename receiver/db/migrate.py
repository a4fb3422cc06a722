"""Alembic migrations: ``autoheal db upgrade``, and at start-up when the schema is behind.

The serving process never imports Alembic (about 9 MB resident): it reads the revision with
one query and, only when it is behind, runs ``autoheal db upgrade`` in a child process.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

from receiver.db.engine import Database
from receiver.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The newest revision in migrations/versions; tests/test_store.py checks it against Alembic.
HEAD_REVISION = "0021"
# Any fixed number: replicas starting together take turns through the upgrade.
_PG_LOCK_ID = 0x6175746F6865616C


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if value is None else str(value)


async def upgrade(db: Database) -> None:
    """Bring the schema to head in this process; safe to run twice and from two replicas."""
    async with db.transaction() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(db: Database) -> str | None:
    async with db.reading() as conn:
        revision: str | None = await conn.run_sync(_current)
        return revision


async def ensure_schema(db: Database, database_url: str) -> None:
    """At start-up: nothing if the schema is current, else upgrade in a child process."""
    if await current_revision(db) == HEAD_REVISION:
        return
    env = {**os.environ, "AUTOHEAL_DATABASE_URL": database_url}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "receiver",
        "db",
        "upgrade",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await child.communicate()
    if child.returncode != 0:
        raise ConfigError(f"database migration failed:\n{output.decode(errors='replace')}")
    revision = await current_revision(db)
    if revision != HEAD_REVISION:
        raise ConfigError(f"database at revision {revision}, expected {HEAD_REVISION}")
