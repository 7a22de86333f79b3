"""The sync guard on Postgres: one `enrich sync` at a time may change a ledger.

A session-level advisory lock, keyed by the ledger schema, held on a connection of its
own for as long as the sync works. Postgres releases it when that session ends, so a
killed sync never leaves it behind, and a sync whose guard session dies notices at its
next `check()` (before every create call) and stops. Other ledgers (another schema in
the same database) have other keys and never wait for each other. DuckDB needs none:
one process at a time opens its file for writing.
"""

from __future__ import annotations

import hashlib
import os
import socket

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from connector.errors import GuardLostError, SyncBusyError

APPLICATION_PREFIX = "batch-enrich sync"


def application_purpose() -> str:
    """The guard connection's name in pg_stat_activity: who holds the guard."""
    return f"{APPLICATION_PREFIX} pid={os.getpid()} host={socket.gethostname()}"


def guard_key(schema: str) -> int:
    """The advisory lock key of a ledger schema (signed 64-bit)."""
    digest = hashlib.blake2b(f"batch_enrich.sync.{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _holder(conn: psycopg.Connection[TupleRow], key: int) -> str:
    """Who holds the lock, as pg_stat_activity tells it (application name and since when)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    with conn.cursor() as cur:
        cur.execute(
            "select a.application_name, a.backend_start from pg_locks as l"
            " join pg_stat_activity as a on a.pid = l.pid"
            " where l.locktype = 'advisory' and l.granted and l.objsubid = 1"
            " and l.classid = %s::oid and l.objid = %s::oid",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        )
        row = cur.fetchone()
    conn.rollback()
    if row is None:
        return "another sync"
    name, since = row
    return f"'{name}' (since {since:%Y-%m-%d %H:%M:%S %Z})"


class PgSyncGuard:
    def __init__(self, conn: psycopg.Connection[TupleRow], key: int) -> None:
        self._conn = conn
        self._key = key

    @classmethod
    def acquire(
        cls, conn: psycopg.Connection[TupleRow], schema: str, wait_seconds: float
    ) -> PgSyncGuard:
        """Take the lock on `conn` (autocommit, the guard's own connection, which it then
        owns and closes); SyncBusyError when another session holds it past the wait."""
        key = guard_key(schema)
        try:
            with conn.cursor() as cur:
                if wait_seconds > 0:
                    cur.execute(
                        sql.SQL("set lock_timeout = {}").format(
                            sql.Literal(f"{int(wait_seconds * 1000)}ms")
                        )
                    )
                    try:
                        cur.execute("select pg_advisory_lock(%s)", (key,))
                        got = True
                    except psycopg.errors.LockNotAvailable:
                        got = False
                    cur.execute("set lock_timeout = 0")
                else:
                    cur.execute("select pg_try_advisory_lock(%s)", (key,))
                    row = cur.fetchone()
                    got = bool(row and row[0])
            if not got:
                who = _holder(conn, key)
                raise SyncBusyError(
                    f"another `enrich sync` is working on ledger schema '{schema}': {who}. "
                    "Nothing was done. It finishes what is pending; run again later, or pass "
                    "--lock-wait SECONDS to wait for it."
                )
        except BaseException:
            conn.close()
            raise
        return cls(conn, key)

    def check(self) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.execute("select 1")
        except psycopg.Error:
            raise GuardLostError(
                "the sync guard's Postgres session was lost; stopping before the next step "
                "(the next sync finishes the work)"
            ) from None

    def release(self) -> None:
        try:
            if not self._conn.closed:
                with self._conn.cursor() as cur:
                    cur.execute("select pg_advisory_unlock(%s)", (self._key,))
        except psycopg.Error:
            pass  # the session is gone, and the lock with it
        finally:
            self._conn.close()
