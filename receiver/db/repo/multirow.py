"""Statements straight to the SQLite driver, for the hot paths: multi-row upserts (ingest,
heal logs) and executemany (the worker's updates of a batch).

SQLAlchemy's execution layer costs more per row than SQLite's own work for these small
statements (its per-row parameter handling was a tenth of the worker's CPU in a storm). The
SQL is what SQLAlchemy compiles for the same statement and parameter keys, and every value
goes through its column's bind processor (JSON, datetimes), so the rows stored are the same.
PostgreSQL runs the statements through SQLAlchemy (asyncpg batches them itself).
"""

from __future__ import annotations

import contextlib
import functools
import operator
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

_Param = tuple[str, Callable[[Any], Any] | None]


# Rows per SQLite statement: 64 x the widest row (21 columns) stays far below SQLite's
# bound-parameter limit (32,766 in older builds).
_MAX_ROWS = 64


@dataclass(frozen=True, slots=True)
class Upsert:
    """One upsert of many rows. ``driver``: on SQLite, the ready SQL and parameters."""

    stmt: Any
    rows: list[dict[str, Any]]
    driver: list[tuple[str, tuple[Any, ...]]] | None


@dataclass(frozen=True, slots=True)
class _MultiRow:
    """A one-row INSERT compiled for the SQLite driver, ready to repeat its VALUES group."""

    head: str  # up to "VALUES "
    group: str  # "(?, ?, ...)"
    tail: str  # ON CONFLICT ... [RETURNING ...]
    row_params: tuple[_Param, ...]  # per placeholder of the group: column key, processor
    tail_params: tuple[Any, ...]  # literals after the group (a CASE's status), bound once

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.group] * rows) + self.tail


_VALUES_GROUP = re.compile(r"VALUES (\(\?(?:, \?)*\))")


@functools.lru_cache(maxsize=64)
def _multi_row(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _MultiRow:
    """Split the compiled statement around its VALUES group.

    Row values go through their column's own processor (JSON, datetimes); literals in the
    ON CONFLICT clause are bound once here.
    """
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    sql = str(compiled)
    groups = list(_VALUES_GROUP.finditer(sql))
    names = list(compiled.positiontup)
    width = len(keys)
    # The layout this relies on: one VALUES group holding exactly the row's columns, first.
    if (
        len(groups) != 1
        or groups[0].group(1).count("?") != width
        or set(names[:width]) != set(keys)
    ):
        raise RuntimeError(f"unexpected INSERT layout: {sql}")
    row_params = tuple(
        (name, _processor(stmt.table.c[name].type, dialect)) for name in names[:width]
    )
    tail_params = tuple(
        _bound(compiled.binds[name].type, dialect, compiled.binds[name].effective_value)
        for name in names[width:]
    )
    match = groups[0]
    return _MultiRow(
        sql[: match.start(1)], match.group(1), sql[match.end(1) :], row_params, tail_params
    )


def _processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The type's bind processor for this dialect (JSON encoding, datetime formatting)."""
    processor: Callable[[Any], Any] | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _bound(type_: Any, dialect: Dialect, value: Any) -> Any:
    """``value`` as the driver receives it (and SQLite hands it back: text, untyped)."""
    process = _processor(type_, dialect)
    return process(value) if process is not None else value


def stored(dialect: Dialect, column: Any, value: Any) -> Any:
    """``value`` as the driver hands it back for ``column``: bound form on SQLite."""
    return _bound(column.type, dialect, value) if dialect.name == "sqlite" else value


def prepare(dialect: Dialect, stmt: Any, rows: list[dict[str, Any]]) -> Upsert:
    """An upsert of many rows; on SQLite also its driver SQL and parameters.

    On SQLite a few multi-row statements per batch (see chunk_sizes), straight to the
    driver: executemany stepped (and released the GIL) once per row, and
    SQLAlchemy's per-row parameter handling cost more than the insert itself. Rows go through
    the same column bind processors (JSON, datetimes), each value once. PostgreSQL runs the
    statement through SQLAlchemy's batched insertmanyvalues.
    """
    if dialect.name != "sqlite":
        return Upsert(stmt, rows, None)
    form = _multi_row(stmt, dialect, tuple(rows[0]))
    width = len(form.row_params)
    pick = operator.itemgetter(*(name for name, _ in form.row_params))
    converted = [(i, process) for i, (_, process) in enumerate(form.row_params) if process]
    seen: dict[tuple[int, int], Any] = {}  # (position, id of a datetime) -> stored form
    values: list[Any] = []
    for row in rows:
        row_values = list(pick(row))
        for i, process in converted:
            value = row_values[i]
            if value is None:
                continue
            if type(value) is datetime:  # the batch's `now` repeats in every row
                key = (i, id(value))
                stored = seen.get(key)
                if stored is None:
                    stored = seen[key] = process(value)
                row_values[i] = stored
            else:
                row_values[i] = process(value)
        values.extend(row_values)
    driver = []
    start = 0
    for size in chunk_sizes(len(rows)):
        params = values[start * width : (start + size) * width]
        params.extend(form.tail_params)
        start += size
        driver.append((form.sql(size), tuple(params)))
    return Upsert(stmt, rows, driver)


def chunk_sizes(count: int) -> list[int]:
    """Row counts per statement: powers of two up to _MAX_ROWS (13 -> 8, 4, 1).

    A handful of distinct statements per upsert, so the driver's statement cache reuses their
    compiled programs instead of parsing, and holding, a new one for every batch size.
    """
    sizes = [_MAX_ROWS] * (count // _MAX_ROWS)
    rest = count % _MAX_ROWS
    bit = _MAX_ROWS
    while rest:
        bit >>= 1
        if rest & bit:
            sizes.append(bit)
            rest -= bit
    return sizes


@dataclass(frozen=True, slots=True)
class _Positional:
    """A statement compiled for the SQLite driver: per ``?``, the row key and its processor,
    or (a literal compiled into the statement) the value already processed."""

    sql: str
    slots: tuple[tuple[str | None, Callable[[Any], Any] | None, Any], ...]


@functools.lru_cache(maxsize=128)
def _positional(stmt: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Positional:
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    slots: list[tuple[str | None, Callable[[Any], Any] | None, Any]] = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if name in keys:
            slots.append((name, _processor(bind.type, dialect), None))
        elif bind.required or bind.expanding:
            raise RuntimeError(f"{name!r} has no value in the rows (or is expanding): {stmt}")
        else:
            slots.append((None, None, _bound(bind.type, dialect, bind.effective_value)))
    return _Positional(str(compiled), tuple(slots))


def execute_many(conn: Connection, stmt: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute ``stmt`` (no RETURNING, no expanding IN) once per row; every row has the
    same keys. On SQLite one driver executemany."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(stmt, list(rows))
        return
    form = _positional(stmt, conn.dialect, tuple(rows[0]))
    slots = form.slots
    params = [
        tuple(
            literal if key is None else (row[key] if process is None else process(row[key]))
            for key, process, literal in slots
        )
        for row in rows
    ]
    with _driver(conn, form.sql) as raw:
        raw.executemany(form.sql, params)


def run_upsert(conn: Connection, upsert: Upsert) -> list[Any]:
    """Execute a prepared upsert; the RETURNING rows if the statement has any."""
    if upsert.driver is None:
        result = conn.execute(upsert.stmt, upsert.rows)
        return list(result) if result.returns_rows else []
    returned: list[Any] = []
    for sql, params in upsert.driver:
        with _driver(conn, sql) as raw:
            returned.extend(raw.execute(sql, params).fetchall())
    return returned


@contextlib.contextmanager
def _driver(conn: Connection, sql: str) -> Iterator[sqlite3.Connection]:
    """The driver's own connection, inside the transaction SQLAlchemy began; its errors
    raised as SQLAlchemy would (callers handle store errors as SQLAlchemyError)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        yield raw
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
