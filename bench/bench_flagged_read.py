"""Reading a flagged view right after `dbt build` on Postgres, with and without the
package's analyze (macros/analyze.sql).

    .venv/bin/python bench/bench_flagged_read.py [--rows 63436] [--to-submit 96]
        [--timeout 600]

For each way, in a fresh database of a private Postgres: an input table of --rows rows,
a first `dbt run` of the flagged view (an empty ledger: every row is new), a ledger
filled by bulk SQL as a sync leaves it (every row but --to-submit requested, landed and
valid, for the hashes the view computed), then `dbt build` (without tests), and at once
the connector's read: every row of the flagged view. Prints the read's wall seconds
(statement_timeout --timeout: a read that hits it prints "> timeout"). "without" builds
(both dbt commands) with the var `batch_enrich_analyze: false`; autovacuum stays on, as
in a real cluster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import fresh_database
from harness.enrich_project import (
    KEY_TYPES,
    create_source,
    default_declaration,
    write_project,
)
from harness.postgres import running_cluster

LEDGER = [
    """
    insert into enrich.batches (submission_id, batch_id, enrichment, status, request_count,
        body_bytes, processing_status, succeeded_count, errored_count, canceled_count,
        expired_count, intent_at, submitted_at, ended_at, landed_at, landed_lines)
    values ('sub_bench', 'msgbatch_bench', 'items', 'landed', %(n)s, 1000, 'ended',
        %(n)s, 0, 0, 0, now(), now(), now(), now(), %(n)s)
    """,
    """
    insert into enrich.requests (submission_id, custom_id, enrichment, primary_key,
        request_hash, input_hash, attempt, flag_reason, model, prompt_version, max_tokens,
        params_bytes)
    select 'sub_bench', cast(item_id as text), 'items', jsonb_build_object('item_id', item_id),
        request_hash, input_hash, 1, 'new', 'claude-haiku-4-5', 'v1', 200, 400
    from analytics.items__flagged
    where item_id < %(n)s
    """,
    """
    insert into enrich.results_raw (batch_id, custom_id, result_type, line, landed_at)
    select 'msgbatch_bench', cast(i as text), 'succeeded', cast(json_build_object(
        'custom_id', cast(i as text),
        'result', json_build_object('type', 'succeeded', 'message', json_build_object(
            'id', 'msg_bench', 'type', 'message', 'role', 'assistant',
            'model', 'claude-haiku-4-5', 'stop_reason', 'end_turn',
            'content', json_build_array(json_build_object(
                'type', 'text', 'text', '{"label": "good", "score": 4}')),
            'usage', json_build_object('input_tokens', 100, 'output_tokens', 10))))
        as json), now()
    from generate_series(0, %(n)s - 1) as t(i)
    """,
]


def _dbt(project: Path, env: dict[str, str], *args: str) -> None:
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [str(dbt), "--quiet", *args, "--project-dir", str(project), "--profiles-dir", str(project)],
        env=env,
        check=True,
    )


def _one_way(cluster: object, rows: int, to_submit: int, timeout: int, analyze: bool) -> str:
    with fresh_database(cluster, prefix="flagread") as db, tempfile.TemporaryDirectory() as tmp:  # type: ignore[arg-type]
        env = dict(os.environ) | db.env | {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        project = write_project(Path(tmp), {"items": default_declaration()})
        (project / "models" / "items__flagged.sql").write_text(
            "{{ config(materialized='view') }}\n{{ batch_enrich.flagged('items') }}\n"
        )
        source = [(i, f"Item {i}: a widget in colour {i % 7}") for i in range(rows)]
        create_source(db.conninfo, "items", source, KEY_TYPES["items"])
        _dbt(project, env, "deps")
        off = [] if analyze else ["--vars", "{batch_enrich_analyze: false}"]
        _dbt(project, env, "run", "--select", "+items__flagged", *off)
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            for text in LEDGER:
                conn.execute(text, {"n": rows - to_submit})  # type: ignore[arg-type]
        build = ["build", "--exclude-resource-type", "unit_test", "--exclude-resource-type", "test"]
        _dbt(project, env, *build, *off)
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute(f"set statement_timeout = {int(timeout) * 1000}")  # type: ignore[arg-type]
            started = time.perf_counter()
            try:
                got = len(conn.execute("select * from analytics.items__flagged").fetchall())
            except psycopg.errors.QueryCanceled:
                return f"> {timeout} s (statement_timeout)"
            seconds = time.perf_counter() - started
        assert got == to_submit, (got, to_submit)
        return f"{seconds:.2f} s ({got} rows)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=63_436)
    parser.add_argument("--to-submit", type=int, default=96)
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    print(
        f"{args.rows:,} input rows, {args.rows - args.to_submit:,} landed, {args.to_submit} flagged"
    )
    with running_cluster() as cluster:
        for label, analyze in (("with analyze (default)", True), ("without analyze", False)):
            took = _one_way(cluster, args.rows, args.to_submit, args.timeout, analyze)
            print(f"  read of the flagged view right after dbt build, {label}: {took}")


if __name__ == "__main__":
    main()
