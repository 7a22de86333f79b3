"""The ledger on Postgres (psycopg 3). The only module that speaks SQL to Postgres.

The queries are the shared texts of `connector.ledger.queries`; every identifier in
them is composed with `psycopg.sql.Identifier`, every value is a parameter. Each public
method commits its own transaction before it returns, so a crash between two calls
loses nothing that was reported as done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.rows import TupleRow

from connector.errors import DuplicateResultLinesError, LedgerError
from connector.ledger import pg_connect
from connector.ledger import queries as q
from connector.ledger.base import LandSummary, PollUpdate, RequestRecord
from connector.ledger.guard import PgSyncGuard, application_purpose
from connector.ledger.params import (
    intent_params,
    landed_coverage,
    owned,
    poll_params,
    rejection_params,
    request_row,
    sent_ids_params,
    shared_key_params,
    transition_params,
)
from connector.ledger.reads import LedgerReads
from connector.policy import BatchStatus
from connector.project import Relation, Target
from connector.result_lines import CopyRows

# COPY format for result lines: CSV whose quote and delimiter bytes cannot occur in
# JSON text (JSON escapes every control character), so each field is taken verbatim.
COPY_DELIMITER = b"\x02"
_COPY_OPTIONS = sql.SQL("(format csv, quote e'\\x01', delimiter e'\\x02')")

# framed chunks (~64 KB each) that framing may run ahead of COPY by
_COPY_QUEUE_CHUNKS = 16


class _ShortQueueWriter(QueuedLibpqWriter):
    """psycopg's queued writer (COPY sends on a worker thread while this one frames
    lines) with a short queue: psycopg's holds 1,024 chunks, so framing, faster than
    the server, filled ~70 MB of memory on every landing."""

    def __init__(self, cursor: psycopg.Cursor[TupleRow]) -> None:
        super().__init__(cursor)
        self._queue.maxsize = _COPY_QUEUE_CHUNKS  # read by put(); nothing is queued yet


class PostgresLedger(LedgerReads):
    def __init__(self, conn: psycopg.Connection[TupleRow], schema: str) -> None:
        self._conn = conn
        self._schema = schema

    # the profile's target, for every further connection (`pg_connect.connect`); set by
    # `connect`
    _target: Target | None = None

    @classmethod
    def connect(cls, target: Target, schema: str) -> PostgresLedger:
        """The ledger's writer connection, with every option of the profile and its role
        (`connector.ledger.pg_connect`)."""
        ledger = cls(pg_connect.connect(target, "batch-enrich"), schema)
        ledger._target = target
        return ledger

    # ------------------------------------------------------------------ helpers
    def _t(self, table: str) -> sql.Identifier:
        return sql.Identifier(self._schema, table)

    def _q(self, text: str, **parts: sql.Composable) -> sql.Composed:
        """A shared query text with its ledger tables (and `parts`) composed."""
        tables = {n: self._t(n) for n in q.fields(text) if n in q.LEDGER_TABLES}
        return sql.SQL(text).format(**tables, **parts)

    def _read(self, text: str, params: dict[str, Any], **parts: sql.Composable) -> list[TupleRow]:
        """Run a read-only query and end its transaction."""
        with self._conn.cursor() as cur:
            cur.execute(self._q(text, **parts), params)
            rows = cur.fetchall()
        self._conn.rollback()
        return rows

    def close(self) -> None:
        self._conn.close()

    # ------------------------------------------------------- the flagged view
    def duplicate_keys(self, relation: Relation, key: Sequence[str]) -> list[tuple[object, ...]]:
        rows = self._read(
            q.REPEATED_KEYS,
            {},
            columns=sql.SQL(", ").join(sql.Identifier(k) for k in key),
            relation=sql.Identifier(relation.schema, relation.name),
        )
        return [tuple(r) for r in rows if all(v is not None for v in r)]

    def stream_flagged(
        self, relation: Relation, columns: Sequence[str], chunk_rows: int
    ) -> Iterator[list[tuple[object, ...]]]:
        """Rows of the flagged view through a server-side cursor on its own connection
        (with the writer's options and role: the profile's), so the writer can commit
        between chunks."""
        if self._target is None:
            raise LedgerError("the flagged view reader needs a ledger opened by connect()")
        reader = pg_connect.connect(self._target, "batch-enrich-reader")
        try:
            with reader.transaction(), reader.cursor(name="batch_enrich_flagged") as cur:
                cur.itersize = chunk_rows
                cur.execute(
                    self._q(
                        q.SELECT_COLUMNS,
                        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                        relation=sql.Identifier(relation.schema, relation.name),
                    )
                )
                while True:
                    rows = cur.fetchmany(chunk_rows)
                    if not rows:
                        break
                    yield [tuple(r) for r in rows]
        finally:
            reader.close()

    # ---------------------------------------------------------- state changes
    def record_intent(
        self,
        submission_id: str,
        enrichment: str,
        body_bytes: int,
        requests: Sequence[RequestRecord],
        *,
        marker: str | None = None,
    ) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                self._q(q.INSERT_INTENT),
                intent_params(submission_id, enrichment, body_bytes, len(requests), marker),
            )
            copy_sql = sql.SQL("copy {} ({}) from stdin").format(
                self._t("requests"),
                sql.SQL(", ").join(sql.Identifier(c) for c in q.REQUEST_COLUMNS),
            )
            with cur.copy(copy_sql) as copy:
                for r in requests:
                    copy.write_row(request_row(submission_id, enrichment, r))
            shared = shared_key_params(submission_id, requests)
            if shared is not None:
                cur.execute(self._q(q.INSERT_SHARED_KEYS), shared)
            cur.execute(self._q(q.ANY_DEFERRALS), {"enrichment": enrichment})
            if cur.fetchone() is not None:
                cur.execute(self._q(q.DELETE_DEFERRALS), sent_ids_params(enrichment, requests))

    def _write(self, steps: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            for text, params in steps:
                cur.execute(self._q(text), params)

    def _write_count(self, text: str, params: dict[str, Any]) -> int:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(self._q(text), params)
            return cur.rowcount

    @contextmanager
    def sync_guard(self, wait_seconds: float) -> Iterator[PgSyncGuard]:
        """The ledger's sync guard: a session advisory lock held on a connection of its
        own for the block (released when the block ends, or by Postgres when the
        process dies and its session closes)."""
        if self._target is None:
            raise LedgerError("the sync guard needs a ledger opened from a profile target")
        conn = pg_connect.connect(self._target, application_purpose(), autocommit=True)
        guard = PgSyncGuard.acquire(conn, self._schema, wait_seconds)
        self._guard = guard
        try:
            yield guard
        finally:
            self._guard = None
            guard.release()

    def transition(
        self,
        submission_id: str,
        old: BatchStatus,
        new: BatchStatus,
        *,
        batch_id: str | None = None,
        note: str | None = None,
    ) -> None:
        params = transition_params(submission_id, old, new, batch_id=batch_id, note=note)
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(self._q(q.TRANSITION), params)
            if cur.rowcount != 1:
                raise LedgerError(
                    f"batch {submission_id} is no longer '{old}' (another sync moved it?)"
                )

    def record_poll(self, submission_id: str, update: PollUpdate) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(self._q(q.RECORD_POLL), poll_params(submission_id, update))

    def land(
        self,
        submission_id: str,
        batch_id: str,
        results: Iterable[bytes],
        framer: CopyRows | None = None,
        *,
        require_own: bool = False,
        marker: str | None = None,
    ) -> LandSummary:
        """Land a batch's result lines and mark it landed, in one transaction.

        `results` is the raw results stream, framed here by `framer` into COPY-ready
        chunks; without a framer it yields those chunks already. If iterating it
        raises (a cut stream), everything rolls back and the batch stays `ended`.
        With `require_own`, lines whose custom_id is not one of this submission's
        requests roll the landing back and the result says so.
        """
        copy_rows = results if framer is None else framer.rows(results)
        with self._conn.transaction() as tx, self._conn.cursor() as cur:
            cur.execute(self._q(q.LOCK_FOR_LANDING), {"sid": submission_id})
            row = cur.fetchone()
            if row is None or row[0] != BatchStatus.ENDED.value:
                raise LedgerError(f"batch {batch_id} is not 'ended' (status {row and row[0]})")
            copy_sql = sql.SQL(
                "copy {} (batch_id, custom_id, result_type, line, landed_at) from stdin {}"
            ).format(self._t("results_raw"), _COPY_OPTIONS)
            # the queued writer sends on a worker thread while this one frames lines
            try:
                with cur.copy(copy_sql, writer=_ShortQueueWriter(cur)) as copy:
                    for chunk in copy_rows:
                        copy.write(chunk)
            except psycopg.errors.UniqueViolation:
                raise DuplicateResultLinesError(
                    f"results of {batch_id} repeat a custom_id; landing again without repeats"
                ) from None
            lines = cur.rowcount
            marker_found: bool | None = None
            if marker is not None:
                cur.execute(self._q(q.DELETE_MARKER_LINE), {"batch_id": batch_id, "marker": marker})
                removed = cur.fetchall()
                marker_found = len(removed) == 1
                lines -= len(removed)
                for (result_type,) in removed:
                    cur.execute(
                        self._q(q.UNCOUNT_MARKER), {"type": result_type, "sid": submission_id}
                    )
            request_count = int(row[1])
            summary = LandSummary(lines, 0, 0, marker_found)
            if require_own or lines != request_count:
                # one join tells both: lines that match no request, requests with no line.
                # With as many (unique) lines as requests and a batch we created, the
                # counts already agree; dbt's reconciliation model checks ids again.
                cur.execute(self._q(q.COVERAGE), {"sid": submission_id, "batch_id": batch_id})
                got = cur.fetchone()
                summary = landed_coverage(lines, request_count, int(got[0]) if got else 0)
                summary = replace(summary, marker_found=marker_found)
            if require_own and not owned(summary):
                raise psycopg.Rollback(tx)  # not ours: land nothing
            cur.execute(
                self._q(q.MARK_LANDED),
                {"status": BatchStatus.LANDED.value, "lines": summary.lines, "sid": submission_id},
            )
        return summary

    def record_rejections(self, enrichment: str, rows: Sequence[tuple[str | None, str]]) -> None:
        if not rows:
            return
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(self._q(q.INSERT_REJECTIONS), rejection_params(enrichment, rows))
