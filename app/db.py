"""Postgres access: connections, database creation and the ordered migrations in schema.sql."""
from __future__ import annotations

import os
import re
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"
_MIGRATION_HEADER = re.compile(r"^-- migrate: (\d{4}) (\S.*)$", re.MULTILINE)
# Arbitrary constant: the advisory lock that serialises `fleet migrate` across processes.
_MIGRATE_LOCK = 7_141_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def connect(url: str, *, autocommit: bool = False, timeout: int = 5) -> psycopg.Connection:
    """Open a connection returning rows as dicts; fails within ``timeout`` seconds if Postgres is away."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, connect_timeout=timeout)


def check_pooled(conn: psycopg.Connection) -> None:
    """The pools' check on checkout: raises when the connection is dead, so the pool opens another
    and a Postgres restart heals itself. An idle connection has nothing to read: when the server
    closed it (a restart, ``pg_terminate_backend``), its socket is readable, with the FATAL notice
    or the end of the stream. Only then is a query sent to find out; a live connection costs a
    ``select`` instead of a round trip, one per job and per ingest batch."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


# Opened on demand, so a worker keeps only what it uses. A job holds up to four at once (its own,
# a queue's advisory lock, a gate's advisory lock, the evidence recorder's for a moment); the
# headroom is for processes that run jobs in several threads (the tests' concurrent workers).
POOL_SIZE = 20
_pools: dict[tuple[int, str, bool], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str, durable: bool = True) -> ConnectionPool:
    # Keyed by pid too: a pool must never be shared across fork (RQ's forking worker).
    key = (os.getpid(), url, durable)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            options = {} if durable else {"options": "-c synchronous_commit=off"}
            pool = ConnectionPool(
                url, min_size=0, max_size=POOL_SIZE, open=True, check=check_pooled,
                kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5, **options},
                reconnect_timeout=0, name=f"fleet-jobs-{os.getpid()}{'' if durable else '-async'}",
            )
            _pools[key] = pool
        return pool


@contextmanager
def pooled(url: str, timeout: float = 10, *, durable: bool = True) -> Iterator[psycopg.Connection]:
    """An autocommit connection from this process's pool (jobs run many short transactions;
    opening a connection for each costs more than the work). Use ``conn.transaction()`` for
    atomic work. ``durable=False``: from a pool whose sessions commit asynchronously (see
    ``asynchronous_commit``), for records whose loss in a Postgres crash costs nothing but the
    record: a commit there does not wait for the disk."""
    with _pool(url, durable).connection(timeout=timeout) as conn:
        yield conn


# Set for a session; RESET hands the pooled connection back as it was lent.
_ASYNC_COMMIT = "SET synchronous_commit = off"
_SYNC_COMMIT = "RESET synchronous_commit"


@contextmanager
def asynchronous_commit(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Commits on ``conn`` in the block return before their WAL is on disk (``synchronous_commit
    = off``, the session's setting; a round trip on entry and one on exit).

    Only for work that is derived from input stored durably elsewhere and can be derived again:
    a Postgres crash (never a clean restart) loses at most the last few hundred milliseconds of
    such commits, whole and in commit order, as if the worker had died before making them; the
    database is never left with half a transaction, and the next synchronous commit of any
    session makes them durable too. A connection that cannot be reset is closed, so the pool
    never lends it on with the setting."""
    conn.execute(_ASYNC_COMMIT)
    try:
        yield conn
    finally:
        try:
            conn.execute(_SYNC_COMMIT)
        except psycopg.Error:
            conn.close()  # broken or in a failed transaction: the pool discards a closed one


@contextmanager
def transaction(url: str) -> Iterator[psycopg.Connection]:
    """A pooled connection whose work commits on success and rolls back on error."""
    with pooled(url) as conn, conn.transaction():
        yield conn


def database_name(url: str) -> str:
    return conninfo_to_dict(url).get("dbname") or "postgres"


def with_database(url: str, name: str) -> str:
    """``url`` (a ``postgresql://`` URL) naming the database ``name`` instead; the rest is kept."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _admin_url(url: str) -> str:
    return make_conninfo(url, dbname="postgres")


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it is missing; True when it was created."""
    name = database_name(url)
    with connect(_admin_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(url: str) -> None:
    """Drop the database named in ``url`` (used by the test suite for its own databases only)."""
    name = database_name(url)
    with connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def load_migrations(path: Path = SCHEMA_PATH) -> list[Migration]:
    """Split schema.sql into its ordered migrations; versions must strictly increase."""
    text = path.read_text()
    headers = list(_MIGRATION_HEADER.finditer(text))
    migrations = []
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        migrations.append(Migration(int(match.group(1)), match.group(2).strip(), text[match.end():end]))
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"{path.name}: migration versions must strictly increase, got {versions}")
    return migrations


def migrate(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply the migrations not yet recorded, in order; returns those applied (none on a re-run)."""
    migrations = load_migrations() if migrations is None else migrations
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration)
    return applied


LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


@contextmanager
def advisory_lock(database_url: str, key: str, lock_timeout_s: float = 120) -> Iterator[None]:
    """Hold ``pg_advisory_xact_lock(key)`` for the block, in a transaction on a pooled connection of
    its own, so the block may commit its work in several steps while keeping the lock. The
    transaction's end lets go of it; a worker that dies drops its connection and Postgres releases
    the lock at once."""
    with pooled(database_url) as conn, conn.transaction():
        conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        conn.execute(LOCK, (key,))
        yield
