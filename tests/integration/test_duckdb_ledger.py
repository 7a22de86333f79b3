"""The DuckDB ledger on its own: shared queries transpiled with their identifiers,
guarded transitions, landing in one transaction (cut streams, repeats, foreign lines),
streaming reads beside commits, odd identifiers, and where the file is."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
from harness.warehouses import DUCKDB_FILE, DuckDBWarehouse

from connector.dbt_invoke import run_dbt
from connector.errors import ConfigError, DuplicateResultLinesError, LedgerError
from connector.ledger import duckdb as duckdb_ledger
from connector.ledger import open_ledger, queries
from connector.ledger.base import PollUpdate, RequestRecord
from connector.ledger.duckdb import DuckDBLedger, database_path, locked_error
from connector.policy import BatchStatus
from connector.project import Relation, Target
from connector.result_lines import CopyRows, MalformedLineError

# the tests that use the ledger fixture run on the DuckDB project only
on_duckdb = pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)

SID = "sub_1"
BATCH = "msgbatch_1"


@pytest.fixture(scope="module")
def ledger_file(
    tmp_path_factory: pytest.TempPathFactory, enrich_project: Path, warehouse_kind: str
) -> Path:
    """A DuckDB file holding an empty ledger, made once by the package's own DDL."""
    path = tmp_path_factory.mktemp("ledger") / DUCKDB_FILE
    env = DuckDBWarehouse(path).env
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        run_dbt(
            ["run-operation", "batch_enrich.ensure_ledger"], enrich_project, enrich_project, None
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # closing a ledger also closes dbt-duckdb's in-process connection to the file
    open_ledger(Target("dev", "duckdb", {"path": str(path)}), "enrich").close()
    return path


@pytest.fixture
def path(ledger_file: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(ledger_file, tmp_path / DUCKDB_FILE))


@pytest.fixture
def ledger(path: Path) -> Iterator[DuckDBLedger]:
    led = open_ledger(Target("dev", "duckdb", {"path": str(path)}), "enrich")
    assert isinstance(led, DuckDBLedger)
    try:
        yield led
    finally:
        led.close()


def _line(custom_id: str, text: str = "ok") -> bytes:
    return orjson.dumps(
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": {"text": text}}}
    )


def _ended(led: DuckDBLedger, n: int) -> None:
    """A batch of n requests ("0".."n-1"), created and ended."""
    requests = [
        RequestRecord(str(i), f'{{"id": {i}}}', "h", None, 1, "new", "m", "v1", 10, 100)
        for i in range(n)
    ]
    led.record_intent(SID, "items", 1000, requests)
    led.transition(SID, BatchStatus.SUBMITTING, BatchStatus.SUBMITTED, batch_id=BATCH)
    now = datetime.now(UTC)
    led.record_poll(SID, PollUpdate("ended", n, 0, 0, 0, now, now, now))


def _framer(fast: bool = True) -> CopyRows:
    return CopyRows(batch_id=BATCH, landed_at=datetime.now(UTC).isoformat(), fast=fast)


def _raw(lines: list[bytes]) -> list[bytes]:
    """The results stream, cut at odd places (chunks do not end at line ends)."""
    data = b"\n".join(lines) + b"\n"
    return [data[i : i + 7] for i in range(0, len(data), 7)]


def _rows(lines: list[bytes]) -> Iterator[bytes]:
    """Framed rows, as a caller without a framer passes them."""
    return _framer().rows([b"\n".join(lines) + b"\n"])


def _status(led: DuckDBLedger) -> str:
    (batch,) = led.batches(list(BatchStatus))
    return batch.status.value


def _landed(path: Path) -> list[tuple[str, str]]:
    """What results_raw holds (read in this process, beside the open ledger)."""
    with duckdb.connect(str(path)) as conn:
        rows = conn.execute("select custom_id, line from enrich.results_raw order by 1").fetchall()
    return [(str(c), str(line)) for c, line in rows]


def test_every_shared_query_transpiles_with_its_identifiers() -> None:
    texts = [
        v
        for k, v in vars(queries).items()
        if k.isupper() and not k.startswith("_") and isinstance(v, str)  # _: fragments
    ]
    assert len(texts) >= 15
    for text in texts:
        duck = queries.duckdb_text(text)
        assert sorted(set(queries.fields(duck))) == sorted(set(queries.fields(text)))
        assert "%(" not in duck and "for update" not in duck.lower()


@on_duckdb
def test_transition_is_guarded_by_the_old_status(ledger: DuckDBLedger) -> None:
    _ended(ledger, 2)
    ledger.transition(SID, BatchStatus.ENDED, BatchStatus.RESULTS_LOST, note="gone")
    with pytest.raises(LedgerError, match="no longer 'ended'"):
        ledger.transition(SID, BatchStatus.ENDED, BatchStatus.RESULTS_LOST, note="again")
    with pytest.raises(LedgerError, match="illegal"):
        ledger.transition(SID, BatchStatus.LANDED, BatchStatus.SUBMITTING)
    (batch,) = ledger.batches([BatchStatus.RESULTS_LOST])
    assert batch.note == "gone" and batch.batch_id == BATCH


@on_duckdb
def test_lines_land_verbatim_and_the_batch_is_landed(ledger: DuckDBLedger, path: Path) -> None:
    _ended(ledger, 3)
    odd = b'{"custom_id":"2","result":{"type":"succeeded","t":"\\u00e9 \\"q\\" \xc3\xa9 \\\\n, ;"}}'
    lines = [_line("0"), _line("1", "x" * 10_000), odd]
    summary = ledger.land(SID, BATCH, _raw(lines), _framer())
    assert (summary.lines, summary.foreign_lines, summary.missing_requests) == (3, 0, 0)
    assert _status(ledger) == "landed"
    assert _landed(path) == [(str(i), line.decode()) for i, line in enumerate(lines)]


@on_duckdb
def test_framed_rows_land_too(ledger: DuckDBLedger, path: Path) -> None:
    _ended(ledger, 2)
    lines = [_line("0"), b'{"result":{"type":"errored"},"custom_id":"1"}']
    summary = ledger.land(SID, BATCH, _rows(lines))
    assert summary.lines == 2 and _status(ledger) == "landed"
    assert _landed(path) == [(str(i), line.decode()) for i, line in enumerate(lines)]


@on_duckdb
def test_raw_lines_in_any_layout_blank_lines_and_an_unterminated_last_line(
    ledger: DuckDBLedger, path: Path
) -> None:
    _ended(ledger, 3)
    other = b'{"result":{"message":{},"type":"errored"},"custom_id":"1"}'
    spaced = b'{ "custom_id" : "2" , "result" : { "type" : "expired" } }'
    data = _line("0") + b"\n\n  \r\n" + other + b"\r\n" + spaced
    summary = ledger.land(SID, BATCH, [data[:50], data[50:]], _framer())
    assert summary.lines == 3 and summary.missing_requests == 0
    assert _landed(path) == [
        ("0", _line("0").decode()),
        ("1", other.decode()),
        ("2", spaced.decode()),
    ]
    with duckdb.connect(str(path)) as conn:
        types = conn.execute("select result_type from enrich.results_raw order by custom_id")
        assert [t for (t,) in types.fetchall()] == ["succeeded", "errored", "expired"]


@on_duckdb
@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"custom_id":"1","result":{"type":"succ',
        b'{"custom_id":"1"}',
        b'{"custom_id":1,"result":{"type":"succeeded"}}',
        b'{"custom_id":"1","result":{"type":null}}',
        b"[1,2]",
        b'"1"',
    ],
)
def test_a_line_that_is_not_a_result_line_lands_nothing(
    ledger: DuckDBLedger, path: Path, bad: bytes
) -> None:
    _ended(ledger, 2)
    with pytest.raises(MalformedLineError):
        ledger.land(SID, BATCH, _raw([_line("0"), bad]), _framer())
    assert _status(ledger) == "ended"
    assert _landed(path) == []


@on_duckdb
def test_nul_escapes_are_replaced_from_the_first_on_in_parts_of_both_kinds(
    ledger: DuckDBLedger, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_ledger, "_PART_BYTES", 100)  # a part every line or so
    _ended(ledger, 6)
    nul = b'{"custom_id":"3","result":{"type":"succeeded","text":"a\\u0000b"}}'
    lines = [_line("0"), _line("1"), _line("2"), nul, _line("4"), _line("5")]
    framer = _framer()
    summary = ledger.land(SID, BATCH, _raw(lines), framer)
    assert summary.lines == 6 and summary.missing_requests == 0
    assert framer.nul_fixed == ["3"]
    landed = dict(_landed(path))
    assert landed["3"] == nul.decode().replace("\\u0000", "\\ufffd")
    assert landed["5"] == _line("5").decode()


@on_duckdb
def test_a_cut_stream_lands_nothing(ledger: DuckDBLedger, path: Path) -> None:
    _ended(ledger, 3)

    def cut() -> Iterator[bytes]:
        yield from _raw([_line("0"), _line("1")])
        raise ConnectionError("stream cut")

    with pytest.raises(ConnectionError):
        ledger.land(SID, BATCH, cut(), _framer())
    assert _status(ledger) == "ended"
    assert _landed(path) == []


@on_duckdb
def test_repeated_lines_roll_back_and_say_so(ledger: DuckDBLedger) -> None:
    _ended(ledger, 2)
    lines = [_line("0"), _line("1"), _line("0", "again")]
    with pytest.raises(DuplicateResultLinesError):
        ledger.land(SID, BATCH, _raw(lines), _framer())
    assert _status(ledger) == "ended"
    redo = _framer(fast=False)  # as connector.landing does: the repeats dropped
    summary = ledger.land(SID, BATCH, _raw(lines), redo)
    assert summary.lines == 2 and summary.missing_requests == 0 and _status(ledger) == "landed"
    assert redo.duplicates == ["0"]


@on_duckdb
def test_foreign_lines_of_an_adopted_batch_land_nothing(ledger: DuckDBLedger, path: Path) -> None:
    _ended(ledger, 2)
    summary = ledger.land(SID, BATCH, _raw([_line("0"), _line("zz")]), _framer(), require_own=True)
    assert summary.foreign_lines == 1
    assert _status(ledger) == "ended"
    assert _landed(path) == []


@on_duckdb
def test_flagged_rows_stream_while_the_writer_commits(ledger: DuckDBLedger, path: Path) -> None:
    schema, table = 'we"ird; --', "flag ged"
    quoted = '"we""ird; --"."flag ged"'
    with duckdb.connect(str(path)) as conn:  # this process shares the ledger's instance
        conn.execute(f'create schema "we""ird; --"; create table {quoted} ("k""ey" integer)')
        conn.execute(f"insert into {quoted} select i % 2500 from range(2600) t(i)")  # noqa: S608
    relation = Relation(None, schema, table)
    assert ledger.flagged_columns(relation) == ['k"ey']
    assert len(ledger.duplicate_keys(relation, ['k"ey'])) == 100
    seen = 0
    for number, chunk in enumerate(ledger.stream_flagged(relation, ['k"ey'], 1000)):
        seen += len(chunk)
        ledger.record_rejections("items", [(None, f"chunk {number} of {len(chunk)}")])
    assert seen == 2600
    assert [r.rejected for r in ledger.status()] == [3]


def test_the_file_is_where_dbt_duckdb_puts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_path(Target("t", "duckdb", {"path": "w.duckdb"})) == tmp_path / "w.duckdb"
    for path in (":memory:", "", "md:my_db", "s3://bucket/w.duckdb"):
        with pytest.raises(ConfigError):
            database_path(Target("t", "duckdb", {"path": path}))


def test_lock_messages_name_the_holder() -> None:
    exc = duckdb.IOException(
        'IO Error: Could not set lock on file "/x/w.duckdb": Conflicting lock is held in '
        "/usr/bin/python3.11 (PID 4242494). See also https://duckdb.org/docs/current/connect/"
    )
    err = locked_error(Path("/x/w.duckdb"), exc)
    assert err is not None and err.exit_code == 5
    assert "/x/w.duckdb" in str(err) and "process 4242494 (/usr/bin/python3.11)" in str(err)
    assert locked_error(Path("/x/w.duckdb"), duckdb.IOException("disk full")) is None
