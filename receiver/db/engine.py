"""Engine and sessions for SQLite (embedded default) and PostgreSQL (several replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from receiver.errors import ConfigError
from receiver.jsoncodec import dumps, loads

T = TypeVar("T")

# How long a writer waits for the lock of another process writing the same SQLite file.
_BUSY_MS = 10_000
# A unit of work of up to this many rows (signals, incidents) is ``short``: its statements run
# on the event loop (about 0.1 ms of CPU a row; the commit still runs off the loop); larger
# ones run wholly on the writer thread, so a burst never stalls the loop for long.
SHORT_ROWS = 64


class _WriterThread:
    """One kept-open connection for SQLite batch writes, and the one thread that commits on
    it (and runs whole transactions too long for the event loop): no pool checkout per
    transaction. The connection is used by one thread at a time: the caller holds the
    database's writer lock for the whole transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="autoheal-sqlite")
        self._conn: Connection | None = None

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.engine.connect()
        return self._conn

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn = self._connection()
        raw = conn.connection.driver_connection
        assert raw is not None
        # The connection does not wait for another process's lock when used on the loop
        # (run_inline); here, on its own thread, it may.
        raw.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        try:
            with conn.begin():
                return fn(conn, *args)
        finally:
            with contextlib.suppress(Exception):
                raw.execute("PRAGMA busy_timeout=0")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """The whole transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transaction, fn, args)

    async def run_inline(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` on the calling (event loop) thread, only the commit on the writer thread.

        For a short unit of work. Handing it to a thread costs more than the work: the
        thread must be woken, scheduled and given the GIL by the busy loop, and takes the GIL
        back after every statement (the driver releases it around each step). Measured on a
        2-core machine under the ingest benchmark, a 13-alert batch's statements took ~1.4 ms
        on the thread, and getting there and back ~2.4 ms more. The commit, whose fsync can
        take long on a slow disk, still runs off the loop.
        """
        conn = self._connection()
        try:
            tx = conn.begin()
        except OperationalError as exc:
            if not _busy(exc):
                raise
            # Another process holds the write lock (an operator's `autoheal db upgrade`,
            # say). Wait for it on the writer thread, not here on the loop.
            return await self.run(fn, *args)
        try:
            result = fn(conn, *args)
        except BaseException:
            tx.rollback()
            raise
        done = asyncio.get_running_loop().run_in_executor(self._executor, _commit, tx)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # The caller's lock must not be released while the thread still uses the
            # connection: wait for the commit (it is quick or failing) before giving up.
            with contextlib.suppress(Exception):
                await done
            raise
        return result

    async def close(self) -> None:
        def close_connection() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close_connection)
        self._executor.shutdown(wait=True)
        self.engine.dispose()


def _busy(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def _commit(tx: RootTransaction) -> None:
    try:
        tx.commit()
    except BaseException:
        # A failed COMMIT (disk full, I/O error) may leave the transaction open: end it so
        # the next batch starts clean.
        with contextlib.suppress(Exception):
            tx.rollback()
        raise


@dataclass(slots=True)
class WriteHealth:
    """Whether the store took the last write: a full disk, an I/O error or a read-only file
    fails every write while reads (and SELECT 1) still succeed, so readiness needs this."""

    refusing: str | None = None  # what the last write failed with; None: it committed

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, OperationalError | InterfaceError) and not _busy(exc):
            self.refusing = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
            if exc.orig is not None and str(exc.orig):
                self.refusing += f": {str(exc.orig)[:120]}"

    def committed(self) -> None:
        self.refusing = None


@dataclass(frozen=True, slots=True)
class Database:
    """One engine. Core connections, not ORM sessions: the hot paths are a few bulk statements.

    SQLite has one writer at a time; its busy handler makes waiters sleep up to 100 ms between
    tries, so this process queues its own writers on an asyncio lock instead.
    """

    engine: AsyncEngine
    read_engine: AsyncEngine
    _write_lock: asyncio.Lock | None = field(default=None)
    # SQLite only: the same file through the plain driver, for batch writes run whole in one
    # thread (one hop per batch instead of one per statement).
    _writer: _WriterThread | None = field(default=None)
    health: WriteHealth = field(default_factory=WriteHealth)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def sync_dialect(self) -> Dialect:
        """The dialect ``run_in_transaction`` functions see (for preparing their parameters)."""
        if self._writer is not None:
            return self._writer.engine.dialect
        return self.engine.sync_engine.dialect

    @contextlib.asynccontextmanager
    async def _watching_writes(self) -> AsyncIterator[None]:
        """Note in ``health`` whether the write transaction inside committed."""
        try:
            yield
        except DBAPIError as exc:
            self.health.failed(exc)
            raise
        self.health.committed()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on exit, rolled back on error."""
        async with self._watching_writes():
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
            else:
                async with self._write_lock, self.engine.begin() as conn:
                    yield conn

    async def run_in_transaction(self, fn: Callable[..., T], *args: Any, short: bool = False) -> T:
        """Run a synchronous unit of work ``fn(connection, *args)`` in one write transaction.

        PostgreSQL: on the async connection (``run_sync``). SQLite, under the writer lock:
        the whole function on the writer thread, or, when the caller says it is ``short``
        (a few milliseconds of statements), the statements on this thread and only the
        commit on the writer thread (see ``_WriterThread.run_inline``).
        """
        async with self._watching_writes():
            if self._writer is None:
                async with self.engine.begin() as conn:
                    return await conn.run_sync(fn, *args)
            assert self._write_lock is not None
            async with self._write_lock:
                if short:
                    return await self._writer.run_inline(fn, *args)
                return await self._writer.run(fn, *args)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work (on SQLite, it does not take the write lock)."""
        async with self.read_engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._writer is not None:
            await self._writer.close()


def _sqlite_setup(engine: Engine, *, cache_kib: int | None = None, busy_ms: int = _BUSY_MS) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so "begin" below decides the BEGIN kind.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the webhook is answered (grouped, so it is cheap).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.execute("PRAGMA foreign_keys=ON")
        if cache_kib is not None:
            cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # A deferred transaction that later writes can fail with SQLITE_BUSY without waiting;
        # writers take the lock at BEGIN and wait their turn instead.
        readonly = conn.get_execution_options().get("autoheal_readonly", False)
        # Straight to the driver: SQLAlchemy's statement execution cost more than the BEGIN.
        cursor = conn.connection.dbapi_connection.cursor()
        sql = "BEGIN" if readonly else "BEGIN IMMEDIATE"
        try:
            cursor.execute(sql)
        except conn.dialect.loaded_dbapi.Error as exc:
            # As SQLAlchemy raises driver errors (callers handle store errors as such).
            raise DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()


def open_database(url: str, **engine_kw: Any) -> Database:
    """Create the engine for an SQLAlchemy async URL."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"AUTOHEAL_DATABASE_URL is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername != "sqlite+aiosqlite":
            parsed = parsed.set(drivername="sqlite+aiosqlite")
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("SQLite needs a file path (an in-memory database is not durable)")
    elif backend == "postgresql":
        if parsed.drivername != "postgresql+asyncpg":
            parsed = parsed.set(drivername="postgresql+asyncpg")
        engine_kw.setdefault("pool_size", 10)
        engine_kw.setdefault("pool_pre_ping", True)
    else:
        raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql")
    if backend == "sqlite":
        # One process, one writer: a few connections suffice (each holds a thread and a page
        # cache), readers included.
        engine_kw.setdefault("pool_size", 3)
        engine_kw.setdefault("max_overflow", 2)
    engine_kw.setdefault("json_serializer", dumps)
    engine_kw.setdefault("json_deserializer", loads)
    engine = create_async_engine(parsed, **engine_kw)
    if backend != "sqlite":
        return Database(engine=engine, read_engine=engine)
    _sqlite_setup(engine.sync_engine)
    sync_engine = create_engine(
        parsed.set(drivername="sqlite+pysqlite"),
        connect_args={"check_same_thread": False},  # used under the writer lock only
        pool_size=1,
        max_overflow=0,
        json_serializer=dumps,
        json_deserializer=loads,
    )
    # 1 MB instead of SQLite's 2 MB default: it still holds the interior pages of the indexes
    # ingest inserts into (the leaves it touches are random, a bigger cache rarely has them),
    # and under load it kept peak RSS ~1 MB lower at no measurable cost in alerts/s.
    # No busy wait on the loop: see _WriterThread.run_inline.
    _sqlite_setup(sync_engine, cache_kib=1024, busy_ms=0)
    return Database(
        engine=engine,
        read_engine=engine.execution_options(autoheal_readonly=True),
        _write_lock=asyncio.Lock(),
        _writer=_WriterThread(sync_engine),
    )
