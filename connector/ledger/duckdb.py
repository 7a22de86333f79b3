"""The ledger on DuckDB (its Python API). The only module that speaks SQL to DuckDB.

The queries are the shared texts of `connector.ledger.queries`, transpiled by sqlglot;
every identifier is quoted by `ident` (sqlglot's DuckDB quoting, embedded quotes
doubled), every value is a parameter. Each public method commits its own transaction
before it returns.

DuckDB lets one process at a time open a database file for writing. Within this
process, connections to the same file share one database instance, so the in-process
`dbt run-operation` that creates the ledger works while this connection is open. A
file held by another process (`dbt build`, another `enrich`) is reported as
`WarehouseLockedError`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from connector.errors import (
    ConfigError,
    DuplicateResultLinesError,
    LedgerError,
    WarehouseLockedError,
)
from connector.ledger import queries as q
from connector.ledger.base import LandSummary, PollUpdate, RequestRecord, SyncGuard
from connector.ledger.params import (
    Params,
    intent_params,
    landed_coverage,
    owned,
    poll_params,
    rejection_params,
    request_columns,
    sent_ids_params,
    shared_key_params,
    transition_params,
)
from connector.ledger.reads import LedgerReads
from connector.policy import BatchStatus
from connector.project import Relation, Target
from connector.result_lines import CopyRows, MalformedLineError

# Result lines arrive raw (connector.result_lines.CopyRows.blocks). DuckDB's JSON reader
# validates each line (blank lines skipped, surrounding whitespace dropped); custom_id
# and result type come from the line's start in the API's own compact layout (one
# regular expression, as the Python fast path does), else from the parsed JSON, checked
# to be strings; a line that is neither fails the statement by `error()`. DuckDB only,
# hence not a shared text; `{path}` is a string literal (table functions take no
# parameters; braces doubled for `compose`). A line longer than 32 MiB
# (maximum_object_size) fails the landing.
LAND_RAW_FROM_FILE = """
insert into {results_raw} (batch_id, custom_id, result_type, line, landed_at)
select
    $batch_id,
    case
        when m.custom_id <> '' then m.custom_id
        when json_extract(json, '$.custom_id')::varchar like '"%' then json ->> '$.custom_id'
        else error('not a result line: ' || left(json, 120))
    end,
    case
        when m.result_type <> '' then m.result_type
        when json_extract(json, '$.result.type')::varchar like '"%'
            then json -> 'result' ->> 'type'
        else error('not a result line: ' || left(json, 120))
    end,
    json,
    $landed_at::timestamptz
from (
    select
        json,
        regexp_extract(
            json,
            '^\\{{"custom_id":"([A-Za-z0-9_-]{{1,64}})","result":\\{{"type":"([a-z_]+)"',
            ['custom_id', 'result_type']
        ) as m
    from read_ndjson_objects({path}, maximum_object_size = 33554432)
)
"""

# Lines that need Python's hand (a `\u0000` or lone surrogate escape to replace, which
# DuckDB's JSON reader refuses; repeated custom_ids to drop) arrive framed as for
# Postgres's COPY: fields split by \x02 and quoted by \x01, bytes that JSON text never
# holds raw, so DuckDB's CSV reader takes each field verbatim.
LAND_FRAMED_FROM_FILE = """
insert into {results_raw} (batch_id, custom_id, result_type, line, landed_at)
select batch_id, custom_id, result_type, line::json, landed_at::timestamptz
from read_csv(
    {path}, delim = '\x02', quote = '\x01', escape = '\x01', new_line = '\\n',
    header = false, auto_detect = false,
    max_line_size = 33554432, buffer_size = 33554432,
    columns = {{
        'batch_id': 'VARCHAR', 'custom_id': 'VARCHAR', 'result_type': 'VARCHAR',
        'line': 'VARCHAR', 'landed_at': 'VARCHAR'
    }}
)
"""

# lines are loaded in parts of this size, the next written while one loads
_PART_BYTES = 16 * 1024 * 1024


# "Could not set lock on file "<path>": Conflicting lock is held in <exe> (PID <n>)"
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:(?!\\)")


@dataclass
class _Transaction:
    discarded: bool = False


class _FileLockGuard:
    def check(self) -> None:
        """The file lock lasts as long as the connection: nothing to check."""


@dataclass(frozen=True)
class Fragment:
    """DuckDB SQL that is safe to splice into a query text; built only by `ident`,
    `idents` and `literal`, never from raw names."""

    text: str


def ident(*parts: str) -> Fragment:
    """A (qualified) identifier, each part quoted with embedded quotes doubled."""
    return Fragment(".".join(exp.to_identifier(p, quoted=True).sql("duckdb") for p in parts))


def idents(names: Sequence[str]) -> Fragment:
    return Fragment(", ".join(ident(n).text for n in names))


def literal(value: str) -> Fragment:
    """A string literal (for table-function arguments, which take no parameters)."""
    return Fragment(exp.Literal.string(value).sql("duckdb"))


def compose(template: str, **parts: Fragment) -> str:
    """Fill the `{name}` fields of a DuckDB query text with fragments."""
    return template.format_map({name: part.text for name, part in parts.items()})


def database_path(target: Target) -> Path:
    """The target's database file, resolved as dbt-duckdb resolves it: as given to
    DuckDB, so a relative path is relative to the working directory."""
    raw = target.params.get("path")
    if not isinstance(raw, str) or not raw or raw == ":memory:":
        raise ConfigError(
            f"DuckDB target '{target.name}' needs a database file in `path` "
            "(the ledger must outlive the process)"
        )
    if _URL_SCHEME.match(raw):
        raise ConfigError(
            f"DuckDB target '{target.name}': path {raw!r} is not a local file; "
            "the connector supports local DuckDB files"
        )
    return Path(raw).expanduser().absolute()


def _process(pid: str) -> str:
    """The command line of a local process, if the OS tells it (Linux /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    command = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return command if len(command) <= 120 else command[:119] + "…"


def locked_error(path: Path, exc: duckdb.Error) -> WarehouseLockedError | None:
    """The error to show for a file another process holds, or None if `exc` is not that."""
    message = str(exc)
    if "lock" not in message.lower():
        return None
    holder = _LOCK_HOLDER.search(message)
    if holder is None:
        who = "another process"
    else:
        command = _process(holder["pid"]) or holder["exe"]
        who = f"process {holder['pid']} ({command})"
    return WarehouseLockedError(
        f"DuckDB file {path} is locked by {who}. DuckDB lets one process at a time open "
        "a file for writing. Wait for `dbt build` (or the other `enrich` command) to finish, "
        "or run them in sequence: the pipeline never writes the file from two processes at "
        "once. Nothing was changed."
    )


def _spooled(
    blocks: Iterable[tuple[bool, bytes]], folder: Path, part_bytes: int
) -> Iterator[tuple[str, bool]]:
    """Write (framed, data) blocks to files in folder, one kind per file, each cut after
    at least part_bytes where a block ends a line; yields (path, framed) per finished file."""
    index, size, spool, kind = 0, 0, None, False
    try:
        for framed, data in blocks:
            if spool is not None and framed != kind:
                spool.close()
                yield spool.name, kind
                index, size, spool = index + 1, 0, None
            if spool is None:
                spool = (folder / f"part-{index:05d}.{'csv' if framed else 'jsonl'}").open("wb")
                kind = framed
            spool.write(data)
            size += len(data)
            if size >= part_bytes and data.endswith(b"\n"):
                spool.close()
                yield spool.name, kind
                index, size, spool = index + 1, 0, None
        if spool is not None:
            spool.close()
            yield spool.name, kind
    finally:
        if spool is not None:
            spool.close()


def spool_root(path: Path) -> Path:
    """Where landing spools result parts for the database file `path`: a hidden folder
    beside it (`.<file>.enrich-spool`), on the database's own disk."""
    return path.with_name(f".{path.name}.enrich-spool")


@contextmanager
def _spool_folder(path: Path) -> Iterator[str]:
    """A folder for one landing's parts, under `spool_root(path)`, removed when the landing
    ends. Folders of other processes found there are removed first: DuckDB lets one
    process at a time write the database, so they were left by a process that died
    mid-landing (SIGKILL, OOM). The root goes too once empty."""
    root = spool_root(path)
    root.mkdir(exist_ok=True)
    mine = f"land-{os.getpid()}-"
    for stale in root.iterdir():
        if not stale.name.startswith(mine):
            shutil.rmtree(stale, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix=mine, dir=root) as folder:
            yield folder
    finally:
        with suppress(OSError):  # not empty: another landing of this process uses it
            root.rmdir()


def _release_dbt_environment(path: Path) -> None:
    """Close dbt-duckdb's connection to this file, if dbt ran in this process.

    dbt-duckdb keeps its connection in a process-wide environment after an in-process
    invocation (here: the `run-operation` that creates the ledger). Left open, it would
    hold the file after the ledger closes, and a `dbt build` started next by a scheduler
    from the same (long-lived) process's children would find it locked.
    """
    module = sys.modules.get("dbt.adapters.duckdb.connections")
    manager = getattr(module, "DuckDBConnectionManager", None)
    env = getattr(manager, "_ENV", None)
    raw = getattr(getattr(env, "creds", None), "path", None)
    if manager is None or env is None or not isinstance(raw, str) or raw == ":memory:":
        return
    if Path(raw).expanduser().absolute() != path:
        return
    env.close()
    manager.close_all_connections()


class DuckDBLedger(LedgerReads):
    def __init__(self, conn: duckdb.DuckDBPyConnection, schema: str, path: Path) -> None:
        self._conn = conn
        self._schema = schema
        self._path = path

    @classmethod
    def connect(cls, target: Target, schema: str) -> DuckDBLedger:
        path = database_path(target)
        # the same configuration as dbt-duckdb, so that dbt run in this process shares
        # the database instance instead of being refused
        config = {str(k): v for k, v in (target.params.get("config_options") or {}).items()}
        try:
            conn = duckdb.connect(str(path), read_only=False, config=config)
        except duckdb.IOException as exc:
            locked = locked_error(path, exc)
            if locked is not None:
                raise locked from None
            raise ConfigError(
                f"cannot open DuckDB target '{target.name}' ({path}): {exc}"
            ) from None
        except duckdb.Error as exc:
            raise ConfigError(
                f"cannot open DuckDB target '{target.name}' ({path}): {exc}"
            ) from None
        return cls(conn, schema, path)

    # ------------------------------------------------------------------ helpers
    def _q(self, text: str, **parts: Fragment) -> str:
        """A shared query text in DuckDB's dialect with its ledger tables composed."""
        tables = {n: ident(self._schema, n) for n in q.fields(text) if n in q.LEDGER_TABLES}
        return compose(q.duckdb_text(text), **tables, **parts)

    def _run(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        """Run a statement and read its result to the end (DuckDB refuses some work on a
        connection whose last result is unfinished). A DML statement's result is one
        row: the number of rows it changed."""
        return self._conn.execute(sql, params or {}).fetchall()

    def _read(self, text: str, params: Params, **parts: Fragment) -> list[tuple[Any, ...]]:
        return self._run(self._q(text, **parts), params)

    def _one(self, sql: str, params: Params | None = None) -> tuple[Any, ...] | None:
        rows = self._run(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        """Commit on a normal exit; roll back on an exception or if discarded."""
        tx = _Transaction()
        self._conn.begin()
        try:
            yield tx
        except BaseException:
            self._conn.rollback()
            raise
        if tx.discarded:
            self._conn.rollback()
        else:
            self._conn.commit()

    def close(self) -> None:
        self._conn.close()
        _release_dbt_environment(self._path)

    # ------------------------------------------------------- the flagged view
    def duplicate_keys(self, relation: Relation, key: Sequence[str]) -> list[tuple[object, ...]]:
        rows = self._read(
            q.REPEATED_KEYS,
            {},
            columns=idents(key),
            relation=ident(relation.schema, relation.name),
        )
        return [tuple(r) for r in rows if all(v is not None for v in r)]

    def stream_flagged(
        self, relation: Relation, columns: Sequence[str], chunk_rows: int
    ) -> Iterator[list[tuple[object, ...]]]:
        """Rows of the flagged view in chunks, read on a second connection to the same
        database (a snapshot), so the writer can commit between chunks."""
        reader = self._conn.cursor()
        try:
            reader.execute(
                self._q(
                    q.SELECT_COLUMNS,
                    columns=idents(columns),
                    relation=ident(relation.schema, relation.name),
                )
            )
            while rows := reader.fetchmany(chunk_rows):
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
        with self._transaction():
            self._run(
                self._q(q.INSERT_INTENT),
                intent_params(submission_id, enrichment, body_bytes, len(requests), marker),
            )
            if requests:
                self._run(
                    self._q(q.INSERT_REQUESTS),
                    request_columns(submission_id, enrichment, requests),
                )
            shared = shared_key_params(submission_id, requests)
            if shared is not None:
                self._run(self._q(q.INSERT_SHARED_KEYS), shared)
            if self._run(self._q(q.ANY_DEFERRALS), {"enrichment": enrichment}):
                self._run(self._q(q.DELETE_DEFERRALS), sent_ids_params(enrichment, requests))

    def _write(self, steps: Iterable[tuple[str, Params]]) -> None:
        with self._transaction():
            for text, params in steps:
                self._run(self._q(text), params)

    def _write_count(self, text: str, params: Params) -> int:
        with self._transaction():
            changed = self._one(self._q(text), params)
        return int(changed[0]) if changed else 0

    @contextmanager
    def sync_guard(self, wait_seconds: float) -> Iterator[SyncGuard]:
        """DuckDB's own file lock is the guard: this process opened the file for
        writing, and no other process can until it closes it (`WarehouseLockedError`)."""
        self._guard = _FileLockGuard()
        try:
            yield self._guard
        finally:
            self._guard = None

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
        with self._transaction():
            changed = self._one(self._q(q.TRANSITION), params)
            if changed is None or changed[0] != 1:
                raise LedgerError(
                    f"batch {submission_id} is no longer '{old}' (another sync moved it?)"
                )

    def record_poll(self, submission_id: str, update: PollUpdate) -> None:
        with self._transaction():
            self._run(self._q(q.RECORD_POLL), poll_params(submission_id, update))

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

        With a `framer`, `results` is the raw stream: its lines are spooled as received
        to temporary files and DuckDB's JSON reader loads them, extracting custom_id and
        result type as it validates each line; lines with a `\\u0000` or lone surrogate
        escape (from the first on) and a redo without repeats (`framer.fast` false) go through the
        framer and DuckDB's CSV reader instead. Without a framer, `results` is already
        framed. If iterating it raises (a cut stream), everything rolls back and the
        batch stays `ended`; a line that is not a result line raises
        MalformedLineError, a repeated custom_id DuplicateResultLinesError, both after
        rolling back (results_raw has no primary key on DuckDB, ledger v6: the batch's
        lines are checked for repeats before the batch is marked landed). With
        `require_own`, lines whose custom_id is not one of this submission's requests
        roll the landing back and the result says so.
        """
        if framer is None:
            landed_at = ""
            blocks: Iterable[tuple[bool, bytes]] = ((True, rows) for rows in results)
        else:
            landed_at = framer.landed_at
            blocks = framer.blocks(results)
        with self._transaction() as tx:
            row = self._one(self._q(q.LOCK_FOR_LANDING), {"sid": submission_id})
            if row is None or row[0] != BatchStatus.ENDED.value:
                raise LedgerError(f"batch {batch_id} is not 'ended' (status {row and row[0]})")
            lines = self._load(batch_id, landed_at, blocks)
            repeated = self._one(self._q(q.REPEATED_LINES), {"batch_id": batch_id})
            if repeated is not None and repeated[0]:
                raise DuplicateResultLinesError(
                    f"results of {batch_id} repeat a custom_id; landing again without repeats"
                )
            marker_found: bool | None = None
            if marker is not None:
                removed = self._run(
                    self._q(q.DELETE_MARKER_LINE), {"batch_id": batch_id, "marker": marker}
                )
                marker_found = len(removed) == 1
                lines -= len(removed)
                for (result_type,) in removed:
                    self._run(
                        self._q(q.UNCOUNT_MARKER), {"type": result_type, "sid": submission_id}
                    )
            request_count = int(row[1])
            summary = LandSummary(lines, 0, 0, marker_found)
            if require_own or lines != request_count:
                got = self._one(self._q(q.COVERAGE), {"sid": submission_id, "batch_id": batch_id})
                summary = landed_coverage(lines, request_count, int(got[0]) if got else 0)
                summary = replace(summary, marker_found=marker_found)
            if require_own and not owned(summary):
                tx.discarded = True  # not ours: land nothing
                return summary
            self._run(
                self._q(q.MARK_LANDED),
                {"status": BatchStatus.LANDED.value, "lines": summary.lines, "sid": submission_id},
            )
        return summary

    def _load(self, batch_id: str, landed_at: str, blocks: Iterable[tuple[bool, bytes]]) -> int:
        """Insert raw lines and framed rows; returns how many. They are spooled to
        files of about _PART_BYTES beside the database (`spool_root`, cleaned of what a
        killed landing left); while the next part is written (as the stream arrives),
        DuckDB loads the last one on a worker thread, in this same transaction. Memory
        holds one chunk; disk holds about two parts."""
        results_raw = ident(self._schema, "results_raw")
        failed: list[BaseException] = []

        def load(path: str, framed: bool) -> int:
            try:
                if failed:  # the transaction is already lost
                    return 0
                if framed:
                    sql = compose(
                        LAND_FRAMED_FROM_FILE, results_raw=results_raw, path=literal(path)
                    )
                    got = self._one(sql)
                else:
                    sql = compose(LAND_RAW_FROM_FILE, results_raw=results_raw, path=literal(path))
                    got = self._one(sql, {"batch_id": batch_id, "landed_at": landed_at})
                return int(got[0]) if got else 0
            except BaseException as exc:
                failed.append(exc)
                raise
            finally:
                os.unlink(path)

        with (
            _spool_folder(self._path) as tmp,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-enrich-load") as loader,
        ):
            parts: list[Future[int]] = []
            try:
                for part, framed in _spooled(blocks, Path(tmp), _PART_BYTES):
                    if failed:
                        break
                    parts.append(loader.submit(load, part, framed))
            except BaseException:
                # a cut stream: drop the parts not yet loaded; the connection stays the
                # worker's until it is done, then the caller rolls back
                loader.shutdown(wait=True, cancel_futures=True)
                raise
            loader.shutdown(wait=True)
            try:
                return sum(p.result() for p in parts)
            except duckdb.ConstraintException:  # a ledger before v6: results_raw keyed
                raise DuplicateResultLinesError(
                    f"results of {batch_id} repeat a custom_id; landing again without repeats"
                ) from None
            except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
                raise MalformedLineError(f"results of {batch_id}: {exc}") from None

    def record_rejections(self, enrichment: str, rows: Sequence[tuple[str | None, str]]) -> None:
        if not rows:
            return
        with self._transaction():
            self._run(self._q(q.INSERT_REJECTIONS), rejection_params(enrichment, rows))
