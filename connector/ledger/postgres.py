"""The ledger on Postgres (psycopg 3). The only module that speaks SQL to Postgres.

Every identifier is composed with `psycopg.sql.Identifier`; every value is a parameter.
Each public method commits its own transaction before it returns, so a crash between
two calls loses nothing that was reported as done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.rows import TupleRow

from connector.errors import ConfigError, DuplicateResultLinesError, LedgerError
from connector.ledger.base import (
    BatchRecord,
    LandSummary,
    PollUpdate,
    RequestRecord,
    StatusRow,
)
from connector.policy import (
    ATTEMPTED,
    IN_FLIGHT,
    TERMINAL_ERROR_TYPES,
    BatchStatus,
    RowHistory,
    is_allowed,
)
from connector.project import Relation, Target

# COPY format for result lines: CSV whose quote and delimiter bytes cannot occur in
# JSON text (JSON escapes every control character), so each field is taken verbatim.
COPY_DELIMITER = b"\x02"
_COPY_OPTIONS = sql.SQL("(format csv, quote e'\\x01', delimiter e'\\x02')")

_CONNECT_KEYS = {"host": "host", "port": "port", "user": "user", "password": "password"}


def _values(statuses: Iterable[BatchStatus]) -> list[str]:
    return [s.value for s in statuses]


class PostgresLedger:
    def __init__(self, conn: psycopg.Connection[TupleRow], schema: str) -> None:
        self._conn = conn
        self._schema = schema

    @classmethod
    def connect(cls, target: Target, schema: str) -> PostgresLedger:
        params: dict[str, Any] = {
            key: target.params[src] for src, key in _CONNECT_KEYS.items() if src in target.params
        }
        params["dbname"] = target.params.get("dbname") or target.params.get("database")
        if target.params.get("sslmode"):
            params["sslmode"] = target.params["sslmode"]
        try:
            conn = psycopg.connect(application_name="batch-enrich", **params)
        except psycopg.OperationalError as exc:
            # libpq messages name host and database, never the password
            raise ConfigError(f"cannot connect to Postgres target '{target.name}': {exc}") from None
        return cls(conn, schema)

    # ------------------------------------------------------------------ helpers
    def _t(self, table: LiteralString) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self._schema), sql.Identifier(table))

    def _rel(self, relation: Relation) -> sql.Composed:
        return sql.SQL("{}.{}").format(
            sql.Identifier(relation.schema), sql.Identifier(relation.name)
        )

    def close(self) -> None:
        self._conn.close()

    def version(self) -> int | None:
        with self._conn.cursor() as cur:
            cur.execute(
                "select 1 from information_schema.tables "
                "where table_schema = %s and table_name = 'ledger_version'",
                (self._schema,),
            )
            if cur.fetchone() is None:
                self._conn.rollback()
                return None
            cur.execute(sql.SQL("select max(version) from {}").format(self._t("ledger_version")))
            got = cur.fetchone()
        self._conn.rollback()
        return None if got is None or got[0] is None else int(got[0])

    # ------------------------------------------------------- the flagged view
    def flagged_columns(self, relation: Relation) -> list[str]:
        with self._conn.cursor() as cur:
            cur.execute(
                "select column_name from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                (relation.schema, relation.name),
            )
            cols = [str(r[0]) for r in cur.fetchall()]
        self._conn.rollback()
        return cols

    def duplicate_keys(self, relation: Relation, key: Sequence[str]) -> list[tuple[object, ...]]:
        cols = sql.SQL(", ").join(sql.Identifier(k) for k in key)
        query = sql.SQL(
            "select {cols} from {rel} where {notnull} group by {cols} having count(*) > 1"
        ).format(
            cols=cols,
            rel=self._rel(relation),
            notnull=sql.SQL(" and ").join(
                sql.SQL("{} is not null").format(sql.Identifier(k)) for k in key
            ),
        )
        with self._conn.cursor() as cur:
            cur.execute(query)
            rows = [tuple(r) for r in cur.fetchall()]
        self._conn.rollback()
        return rows

    def stream_flagged(
        self, relation: Relation, columns: Sequence[str], chunk_rows: int
    ) -> Iterator[list[tuple[object, ...]]]:
        """Rows of the flagged view through a server-side cursor on its own connection,
        so the writer can commit between chunks."""
        info = self._conn.info
        reader = psycopg.connect(
            host=info.host,
            port=info.port,
            user=info.user,
            password=info.password,
            dbname=info.dbname,
            application_name="batch-enrich-reader",
        )
        try:
            with reader.transaction(), reader.cursor(name="batch_enrich_flagged") as cur:
                cur.itersize = chunk_rows
                cur.execute(
                    sql.SQL("select {} from {}").format(
                        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                        self._rel(relation),
                    )
                )
                while True:
                    rows = cur.fetchmany(chunk_rows)
                    if not rows:
                        break
                    yield [tuple(r) for r in rows]
        finally:
            reader.close()

    def history(self, enrichment: str, pairs: Sequence[tuple[str, str]]) -> dict[str, RowHistory]:
        if not pairs:
            return {}
        query = sql.SQL(
            """
            with wanted as (
                select * from unnest(%(ids)s::text[], %(hashes)s::text[])
                    as w(custom_id, request_hash)
            )
            select w.custom_id,
                   count(*) filter (
                       where r.request_hash = w.request_hash and b.status = any(%(attempted)s)
                   ) as attempts,
                   coalesce(bool_or(b.status = any(%(in_flight)s)), false) as in_flight,
                   coalesce(bool_or(
                       r.request_hash = w.request_hash and x.result_type = 'succeeded'
                   ), false) as succeeded,
                   coalesce(bool_or(
                       r.request_hash = w.request_hash and x.result_type = 'errored'
                       and (x.line -> 'result' -> 'error' -> 'error' ->> 'type') = any(%(terminal)s)
                   ), false) as terminal
            from wanted as w
            join {requests} as r on r.enrichment = %(enrichment)s and r.custom_id = w.custom_id
            join {batches} as b on b.submission_id = r.submission_id
            left join {results} as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
            group by w.custom_id
            """
        ).format(
            requests=self._t("requests"), batches=self._t("batches"), results=self._t("results_raw")
        )
        params = {
            "ids": [p[0] for p in pairs],
            "hashes": [p[1] for p in pairs],
            "enrichment": enrichment,
            "attempted": _values(ATTEMPTED),
            "in_flight": _values(IN_FLIGHT),
            "terminal": sorted(TERMINAL_ERROR_TYPES),
        }
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            out = {
                str(cid): RowHistory(
                    attempts=int(att), in_flight=bool(fl), succeeded=bool(ok), terminal=bool(term)
                )
                for cid, att, fl, ok, term in cur.fetchall()
            }
        self._conn.rollback()
        return out

    # ---------------------------------------------------------- state changes
    def record_intent(
        self,
        submission_id: str,
        enrichment: str,
        body_bytes: int,
        requests: Sequence[RequestRecord],
    ) -> None:
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "insert into {} (submission_id, enrichment, status, request_count, "
                    "body_bytes, intent_at) values (%s, %s, %s, %s, %s, now())"
                ).format(self._t("batches")),
                (
                    submission_id,
                    enrichment,
                    BatchStatus.SUBMITTING.value,
                    len(requests),
                    body_bytes,
                ),
            )
            copy_sql = sql.SQL(
                "copy {} (submission_id, custom_id, enrichment, primary_key, request_hash, "
                "input_hash, attempt, flag_reason, model, prompt_version, max_tokens, "
                "params_bytes) from stdin"
            ).format(self._t("requests"))
            with cur.copy(copy_sql) as copy:
                for r in requests:
                    copy.write_row(
                        (
                            submission_id,
                            r.custom_id,
                            enrichment,
                            r.primary_key_json,
                            r.request_hash,
                            r.input_hash,
                            r.attempt,
                            r.flag_reason,
                            r.model,
                            r.prompt_version,
                            r.max_tokens,
                            r.params_bytes,
                        )
                    )

    def transition(
        self,
        submission_id: str,
        old: BatchStatus,
        new: BatchStatus,
        *,
        batch_id: str | None = None,
        note: str | None = None,
    ) -> None:
        if not is_allowed(old, new):
            raise LedgerError(f"illegal batch transition {old} -> {new} ({submission_id})")
        sets = [sql.SQL("status = %(new)s")]
        if batch_id is not None:
            sets.append(sql.SQL("batch_id = %(batch_id)s"))
        if new is BatchStatus.SUBMITTED:
            sets.append(sql.SQL("submitted_at = now()"))
        if note is not None:
            sets.append(sql.SQL("note = concat_ws('; ', note, %(note)s::text)"))
        query = sql.SQL(
            "update {} set {} where submission_id = %(sid)s and status = %(old)s"
        ).format(self._t("batches"), sql.SQL(", ").join(sets))
        params = {
            "new": new.value,
            "old": old.value,
            "sid": submission_id,
            "batch_id": batch_id,
            "note": note,
        }
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(query, params)
            if cur.rowcount != 1:
                raise LedgerError(
                    f"batch {submission_id} is no longer '{old}' (another sync moved it?)"
                )

    def record_poll(self, submission_id: str, update: PollUpdate) -> None:
        ended = update.processing_status == "ended"
        query = sql.SQL(
            """
            update {} set processing_status = %(ps)s, last_polled_at = now(),
                succeeded_count = %(s)s, errored_count = %(e)s, canceled_count = %(c)s,
                expired_count = %(x)s, api_created_at = coalesce(%(created)s, api_created_at),
                expires_at = coalesce(%(expires)s, expires_at), ended_at = %(ended_at)s,
                status = case when %(ended)s and status = %(submitted)s then %(ended_status)s
                              else status end
            where submission_id = %(sid)s
            """
        ).format(self._t("batches"))
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(
                query,
                {
                    "ps": update.processing_status,
                    "s": update.succeeded,
                    "e": update.errored,
                    "c": update.canceled,
                    "x": update.expired,
                    "created": update.created_at,
                    "expires": update.expires_at,
                    "ended_at": update.ended_at,
                    "ended": ended,
                    "submitted": BatchStatus.SUBMITTED.value,
                    "ended_status": BatchStatus.ENDED.value,
                    "sid": submission_id,
                },
            )

    def land(
        self,
        submission_id: str,
        batch_id: str,
        copy_rows: Iterable[bytes],
        *,
        require_own: bool = False,
    ) -> LandSummary:
        """Land a batch's result lines and mark it landed, in one transaction.

        `copy_rows` yields COPY-ready chunks (see connector.landing). If iterating it
        raises (a cut stream), everything rolls back and the batch stays `ended`.
        With `require_own`, lines whose custom_id is not one of this submission's
        requests roll the landing back and the result says so.
        """
        results = self._t("results_raw")
        with self._conn.transaction() as tx, self._conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "select status, request_count from {} where submission_id = %s for update"
                ).format(self._t("batches")),
                (submission_id,),
            )
            row = cur.fetchone()
            if row is None or row[0] != BatchStatus.ENDED.value:
                raise LedgerError(f"batch {batch_id} is not 'ended' (status {row and row[0]})")
            copy_sql = sql.SQL(
                "copy {} (batch_id, custom_id, result_type, line, landed_at) from stdin {}"
            ).format(results, _COPY_OPTIONS)
            # the queued writer sends on a worker thread while this one frames lines
            try:
                with cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as copy:
                    for chunk in copy_rows:
                        copy.write(chunk)
            except psycopg.errors.UniqueViolation:
                raise DuplicateResultLinesError(
                    f"results of {batch_id} repeat a custom_id; landing again without repeats"
                ) from None
            lines = cur.rowcount
            request_count = int(row[1])
            summary = LandSummary(lines, 0, 0)
            if require_own or lines != request_count:
                # one join tells both: lines that match no request, requests with no line.
                # With as many (unique) lines as requests and a batch we created, the
                # counts already agree; dbt's reconciliation model checks ids again.
                summary = self._coverage(cur, submission_id, batch_id, lines, request_count)
            if require_own and summary.foreign_lines:
                raise psycopg.Rollback(tx)  # not ours: land nothing
            cur.execute(
                sql.SQL(
                    "update {} set status = %s, landed_at = now(), landed_lines = %s "
                    "where submission_id = %s"
                ).format(self._t("batches")),
                (BatchStatus.LANDED.value, summary.lines, submission_id),
            )
        return summary

    def _coverage(
        self, cur: psycopg.Cursor[TupleRow], sid: str, batch_id: str, lines: int, requests: int
    ) -> LandSummary:
        cur.execute(
            sql.SQL(
                "select count(*) from {res} as x join {req} as r "
                "on r.submission_id = %(s)s and r.custom_id = x.custom_id "
                "where x.batch_id = %(b)s"
            ).format(res=self._t("results_raw"), req=self._t("requests")),
            {"b": batch_id, "s": sid},
        )
        got = cur.fetchone()
        matched = int(got[0]) if got else 0
        return LandSummary(lines, lines - matched, requests - matched)

    def record_rejections(self, enrichment: str, rows: Sequence[tuple[str | None, str]]) -> None:
        if not rows:
            return
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "insert into {} (enrichment, primary_key, reason, seen_at) "
                    "values (%s, %s, %s, now())"
                ).format(self._t("rejections")),
                [(enrichment, key, reason) for key, reason in rows],
            )

    # --------------------------------------------------------------- queries
    def batches(self, statuses: Iterable[BatchStatus]) -> list[BatchRecord]:
        query = sql.SQL(
            "select submission_id, batch_id, enrichment, status, request_count, intent_at, "
            "api_created_at, last_polled_at, note from {} where status = any(%s) "
            "order by intent_at, submission_id"
        ).format(self._t("batches"))
        with self._conn.cursor() as cur:
            cur.execute(query, (_values(statuses),))
            rows = cur.fetchall()
        self._conn.rollback()
        return [
            BatchRecord(
                submission_id=r[0],
                batch_id=r[1],
                enrichment=r[2],
                status=BatchStatus(r[3]),
                request_count=int(r[4]),
                intent_at=r[5],
                api_created_at=r[6],
                last_polled_at=r[7],
                note=r[8],
            )
            for r in rows
        ]

    def known_batch_ids(self, batch_ids: Sequence[str]) -> set[str]:
        with self._conn.cursor() as cur:
            cur.execute(
                sql.SQL("select batch_id from {} where batch_id = any(%s)").format(
                    self._t("batches")
                ),
                (list(batch_ids),),
            )
            out = {str(r[0]) for r in cur.fetchall()}
        self._conn.rollback()
        return out

    def submission_custom_ids(self, submission_id: str) -> list[str]:
        with self._conn.cursor() as cur:
            cur.execute(
                sql.SQL("select custom_id from {} where submission_id = %s order by 1").format(
                    self._t("requests")
                ),
                (submission_id,),
            )
            out = [str(r[0]) for r in cur.fetchall()]
        self._conn.rollback()
        return out

    def now(self) -> datetime:
        with self._conn.cursor() as cur:
            cur.execute("select now()")
            row = cur.fetchone()
        self._conn.rollback()
        assert row is not None
        value: datetime = row[0]
        return value

    def status(self) -> list[StatusRow]:
        query = sql.SQL(
            """
            with req as (
                select r.enrichment, r.custom_id, r.request_hash, b.status, b.submission_id,
                       x.result_type,
                       x.line -> 'result' -> 'error' -> 'error' ->> 'type' as error_type
                from {requests} as r
                join {batches} as b on b.submission_id = r.submission_id
                left join {results} as x on x.batch_id = b.batch_id and x.custom_id = r.custom_id
            ),
            names as (
                select enrichment from {batches} union select enrichment from {rejections}
            )
            select n.enrichment,
                (select count(*) from {batches} as b
                  where b.enrichment = n.enrichment and b.status = any(%(in_flight)s)),
                (select count(*) from req where req.enrichment = n.enrichment
                  and req.status = any(%(in_flight)s)),
                (select count(*) from {batches} as b
                  where b.enrichment = n.enrichment and b.status = %(landed)s),
                (select count(*) from req where req.enrichment = n.enrichment
                  and req.result_type = 'succeeded'),
                (select count(*) from req where req.enrichment = n.enrichment
                  and req.result_type is not null and req.result_type <> 'succeeded'
                  and coalesce(req.error_type, '') <> all(%(terminal)s)),
                (select count(*) from req where req.enrichment = n.enrichment
                  and req.error_type = any(%(terminal)s)),
                (select count(*) from req where req.enrichment = n.enrichment
                  and req.status = %(landed)s and req.result_type is null),
                (select count(*) from {rejections} as j where j.enrichment = n.enrichment)
            from names as n
            order by n.enrichment
            """
        ).format(
            requests=self._t("requests"),
            batches=self._t("batches"),
            results=self._t("results_raw"),
            rejections=self._t("rejections"),
        )
        params = {
            "in_flight": _values(IN_FLIGHT),
            "landed": BatchStatus.LANDED.value,
            "terminal": sorted(TERMINAL_ERROR_TYPES),
        }
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        self._conn.rollback()
        return [StatusRow(str(r[0]), *(int(v) for v in r[1:])) for r in rows]
