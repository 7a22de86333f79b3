"""Landing benchmark on DuckDB: our landing vs DuckDB's own bulk load of the same file.

    .venv/bin/python bench/bench_landing_duckdb.py [--lines 200000] [--alternatives]

One run, one machine, over the same results file, into a DuckDB database file:
  1. DuckDB's limit: `create table ... as select * from read_ndjson_objects(file)`, the
     raw lines into a one-column json table (the analogue of Postgres's raw COPY);
  2. ours: the connector's landing (SDK raw stream -> raw JSONL spooled to temporary
     files as received -> `read_ndjson_objects` into results_raw, custom_id and type
     extracted by DuckDB, with the exactly-once guard: status check, repeat check,
     status update, one transaction).
With --alternatives, two other ways to do step 2, through the same ledger transaction:
  a. framed: prefix framing in Python (`CopyRows.rows`, as for Postgres's COPY), the
     framed rows spooled and loaded by `read_csv` (the landing before raw JSONL; still
     the path for lines with a `\u0000` escape and for the redo without repeats);
  b. Arrow: framed chunks parsed by pyarrow's CSV reader, streamed to DuckDB as a
     RecordBatchReader, no temporary file (needs pyarrow, not a dependency).
Then peak RSS of a fresh process landing N vs N/10 lines.
Targets: ours >= 0.8 x DuckDB's own load (issue 10; 0.5 in issue 5); RSS ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, results_file, serve_results

from connector.ledger.duckdb import DuckDBLedger, compose, ident, literal
from connector.project import Target

LANDED_AT = "2026-11-26T00:00:00+00:00"


def ensure_ledger(path: Path) -> None:
    """Create the ledger through its one definition (the dbt macro), like the connector."""
    from dbt.cli.main import dbtRunner

    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ["BATCH_ENRICH_TARGET"] = "duckdb"
    os.environ["BATCH_ENRICH_DUCKDB_PATH"] = str(path)
    res = dbtRunner().invoke(
        [
            "--quiet",
            "run-operation",
            "batch_enrich.ensure_ledger",
            "--project-dir",
            str(ROOT),
            "--profiles-dir",
            str(ROOT),
        ]
    )
    if not res.success:
        raise SystemExit(f"ensure_ledger failed: {res.exception}")


def open_ledger(path: Path, cls: type[DuckDBLedger] = DuckDBLedger) -> DuckDBLedger:
    return cls.connect(Target("bench", "duckdb", {"path": str(path)}), "enrich")


def prepare_batch(path: Path, batch_id: str, n: int) -> str:
    """A batch in status `ended` with n requests, as the connector leaves it before landing."""
    sid = "sub_" + batch_id
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "insert into enrich.batches (submission_id, batch_id, enrichment, status, "
            "request_count, body_bytes, intent_at) values (?, ?, 'bench', 'ended', ?, 0, now())",
            [sid, batch_id, n],
        )
        conn.execute(
            "insert into enrich.requests (submission_id, custom_id, enrichment, primary_key,"
            " request_hash, attempt, flag_reason, model, prompt_version, max_tokens,"
            " params_bytes) select ?, i::varchar, 'bench', json_object('id', i), 'h', 1,"
            " 'new', 'claude-haiku-4-5', 'v1', 100, 100 from range(?) as t(i)",
            [sid, n],
        )
    return sid


def duckdb_limit(path: Path, lines: Path, table: str) -> float:
    """DuckDB's own bulk load: the raw lines into a one-column json table, committed."""
    with duckdb.connect(str(path)) as conn:
        sql = compose(
            "create table {table} as select * from read_ndjson_objects({path})",
            table=ident(table),
            path=literal(str(lines)),
        )
        start = time.perf_counter()
        conn.execute(sql)
        return time.perf_counter() - start


class ArrowLedger(DuckDBLedger):
    """Alternative b: framed chunks parsed by pyarrow and streamed, no temporary file."""

    def _load(self, batch_id: str, landed_at: str, blocks: Iterable[tuple[bool, bytes]]) -> int:
        import io

        import pyarrow as pa
        import pyarrow.csv as pacsv

        names = ["batch_id", "custom_id", "result_type", "line", "landed_at"]
        schema = pa.schema([(n, pa.string()) for n in names])
        read = pacsv.ReadOptions(column_names=names)
        parse = pacsv.ParseOptions(delimiter="\x02", quote_char=False, escape_char=False)
        convert = pacsv.ConvertOptions(column_types=schema)

        def batches() -> Iterator[pa.RecordBatch]:
            for framed, chunk in blocks:
                assert framed
                table = pacsv.read_csv(io.BytesIO(chunk), read, parse, convert)
                yield from table.to_batches()

        reader = pa.RecordBatchReader.from_batches(schema, batches())
        self._conn.register("framed", reader)
        sql = compose(
            "insert into {results} select batch_id, custom_id, result_type, line::json, "
            "landed_at::timestamptz from framed",
            results=ident("enrich", "results_raw"),
        )
        got = self._conn.execute(sql).fetchone()
        self._conn.unregister("framed")
        return int(got[0]) if got else 0


def land(path: Path, sid: str, batch_id: str, how: str = "ours") -> float:
    from connector.api import BatchApi
    from connector.result_lines import CopyRows

    ledger = open_ledger(path, ArrowLedger if how == "arrow" else DuckDBLedger)
    api = BatchApi()
    start = time.perf_counter()
    with api.results(batch_id) as chunks:
        rows = CopyRows(batch_id=batch_id, landed_at=LANDED_AT)
        if how == "ours":  # as connector.landing calls it: the raw stream and its framer
            summary = ledger.land(sid, batch_id, chunks, rows)
        else:  # framed in Python first
            summary = ledger.land(sid, batch_id, rows.rows(chunks))
    took = time.perf_counter() - start
    assert summary.missing_requests == 0 and summary.foreign_lines == 0, summary
    ledger.close()
    api.close()
    return took


def child(n: int) -> None:
    """Land n lines in this fresh process, into a fresh copy of the empty ledger, and
    print its peak RSS in KiB."""
    template = Path(os.environ["BENCH_DUCKDB_TEMPLATE"])
    path = template.with_name(f"rss{n}.duckdb")
    shutil.copy(template, path)
    batch_id = f"msgbatch_rss{n}"
    sid = prepare_batch(path, batch_id, n)
    land(path, sid, batch_id)
    print(peak_rss_kib())


def peak_rss_kib() -> int:
    """This process's peak RSS. On Linux `ru_maxrss` starts from the parent's peak at
    fork (it survives exec), so a child of a big parent would report the parent's;
    /proc's VmHWM belongs to this program alone."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (line,) = [row for row in status.splitlines() if row.startswith("VmHWM:")]
    return int(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--alternatives", action="store_true", help="also land framed, Arrow")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    n = args.lines
    os.environ.setdefault("ANTHROPIC_API_KEY", "bench-key")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        ensure_ledger(db)
        open_ledger(db).close()  # (also closes dbt's in-process connection to the file)
        template = shutil.copy(db, Path(tmp) / "empty.duckdb")
        small = max(1, n // 10)
        lines = results_file(Path(tmp) / "results.jsonl", n)
        ways = ["ours"] + (["framed", "arrow"] if args.alternatives else [])
        if "arrow" in ways and importlib.util.find_spec("pyarrow") is None:
            print("pyarrow is not installed: the Arrow alternative is left out")
            ways.remove("arrow")
        files = {f"msgbatch_{how}{r}": lines for how in ways for r in range(args.repeat)}
        files[f"msgbatch_rss{n}"] = lines
        files[f"msgbatch_rss{small}"] = results_file(Path(tmp) / "small.jsonl", small)
        size_mb = lines.stat().st_size / 1e6
        print(f"{n} result lines, {size_mb:.0f} MB ({size_mb * 1e6 / n:.0f} bytes/line)")
        times: dict[str, float] = {}
        with serve_results(files) as url:
            os.environ["ANTHROPIC_BASE_URL"] = url
            t_limit = float("inf")
            for r in range(args.repeat):  # interleaved, best of each (the machine is shared)
                t_limit = min(t_limit, duckdb_limit(db, lines, f"raw_lines{r}"))
                for how in ways:
                    sid = prepare_batch(db, f"msgbatch_{how}{r}", n)
                    took = land(db, sid, f"msgbatch_{how}{r}", how)
                    times[how] = min(times.get(how, took), took)
            env = dict(os.environ, BENCH_DUCKDB_TEMPLATE=str(template))
            rss = {}
            for count in (n, small):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(count)],
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                rss[count] = int(out.stdout.strip().splitlines()[-1])
    print(
        f"DuckDB read_ndjson_objects -> json table : {t_limit:6.2f} s  {n / t_limit:9,.0f} lines/s"
    )
    labels = {
        "ours": "ours (raw JSONL, keys)   ",
        "framed": "alt: framed, read_csv   ",
        "arrow": "alt: Arrow record batches",
    }
    for how, took in times.items():
        print(f"{labels[how]}                 : {took:6.2f} s  {n / took:9,.0f} lines/s")
    print(f"ours / DuckDB's own load speed = {t_limit / times['ours']:.2f}  (target >= 0.8)")
    for how in ways[1:]:
        print(f"{how} / DuckDB's own load speed = {t_limit / times[how]:.2f}")
    print(
        f"peak RSS landing {n}: {rss[n] / 1024:.0f} MiB; {small}: {rss[small] / 1024:.0f} MiB; "
        f"ratio {rss[n] / rss[small]:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
