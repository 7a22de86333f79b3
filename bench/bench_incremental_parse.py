"""Incremental parse models vs a full refresh, on fabricated results in a private Postgres.

    .venv/bin/python bench/bench_incremental_parse.py [--rows 100000] [--new-fraction 0.01]

1. builds this project once (ledger, seeds, examples);
2. fabricates --rows result lines landed over the past 30 days (SQL generate_series: 96%
   valid structured outputs, 2% out-of-range values, 2% overloaded errors; ~800 bytes a
   line, like the API's), with their batches and requests, and builds the parse models;
3. lands --new-fraction more lines now, then times
     dbt build -s int_enrich__results_parsed+            (incremental)
     dbt build -s int_enrich__results_parsed+ --full-refresh
   and the same for the two parse models alone (dbt run), and prints the ratios.

Times are wall-clock of in-process dbt invocations (dbt's own ~1-2 s of start-up
included) and, separately, the sum of the models' execution times that dbt reports
(two threads: the sum can exceed the wall time). Each timed step runs on the same data:
the incremental run first, then the full refresh. Only the two parse models are
incremental; everything downstream (request outcomes, failures, costs, history,
reconciliation, enriched tables) is rebuilt in full by both runs, because their rows
change as batches land, so the first ratio is bounded by them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from dataclasses import dataclass

import psycopg
from _common import ROOT, postgres
from dbt.cli.main import dbtRunner

SELECT_ALL = ["-s", "int_enrich__results_parsed+"]
SELECT_PARSE = ["-s", "int_enrich__results_parsed", "int_enrich__results_validated"]
LINES_PER_BATCH = 10_000

# One statement per table; %(first)s..%(last)s is the range of request numbers, landed at
# %(landed)s minus one hour per batch, cycling over %(spread_days)s days.
BATCHES_SQL = """
insert into enrich.batches (submission_id, batch_id, enrichment, status, request_count,
    body_bytes, processing_status, succeeded_count, errored_count, canceled_count,
    expired_count, intent_at, submitted_at, ended_at, landed_at, landed_lines)
select
    'sub_bench' || lpad(b::text, 23, '0'),
    'msgbatch_bench' || lpad(b::text, 12, '0'),
    'ticket_triage', 'landed', count(*), 800 * count(*), 'ended',
    count(*) filter (where g %% 50 <> 0), count(*) filter (where g %% 50 = 0), 0, 0,
    min(landed) - interval '2 hours', min(landed) - interval '2 hours', min(landed),
    min(landed), count(*)
from (
    select
        g,
        g / %(per_batch)s as b,
        %(landed)s::timestamptz
        - ((g / %(per_batch)s) %% (%(spread_days)s * 24 + 1)) * interval '1 hour' as landed
    from generate_series(%(first)s::bigint, %(last)s::bigint) as g
) as numbered
group by b
"""

REQUESTS_SQL = """
insert into enrich.requests (submission_id, custom_id, enrichment, primary_key, request_hash,
    input_hash, attempt, flag_reason, model, prompt_version, max_tokens, params_bytes)
select
    'sub_bench' || lpad((g / %(per_batch)s)::text, 23, '0'), g::text, 'ticket_triage',
    jsonb_build_object('ticket_id', g), md5('request ' || g), md5('input ' || g), 1, 'new',
    'claude-haiku-4-5', 'v1', 300, 900
from generate_series(%(first)s::bigint, %(last)s::bigint) as g
"""

RESULTS_SQL = """
insert into enrich.results_raw (batch_id, custom_id, result_type, line, landed_at)
select
    'msgbatch_bench' || lpad((g / %(per_batch)s)::text, 12, '0'),
    g::text,
    case when g %% 50 = 0 then 'errored' else 'succeeded' end,
    json_build_object(
        'custom_id', g::text,
        'result', case
            when g %% 50 = 0 then json_build_object(
                'type', 'errored',
                'error', json_build_object(
                    'type', 'error',
                    'error', json_build_object('type', 'overloaded_error', 'message', 'Overloaded'),
                    'request_id', 'req_011bench' || g))
            else json_build_object(
                'type', 'succeeded',
                'message', json_build_object(
                    'model', 'claude-haiku-4-5-20251001',
                    'id', 'msg_01bench' || lpad(g::text, 14, '0'),
                    'type', 'message',
                    'role', 'assistant',
                    'content', json_build_array(json_build_object(
                        'type', 'text',
                        'text', json_build_object(
                            'category', (array[
                                'billing', 'bug', 'feature_request', 'account', 'other'
                            ])[1 + g %% 5],
                            'urgency', 1 + g %% 5 + case when g %% 50 = 25 then 5 else 0 end,
                            'summary',
                            'Ticket ' || g || ': '
                            || repeat('the customer cannot export reports; ', 5)
                        )::text)),
                    'stop_reason', 'end_turn',
                    'stop_sequence', null,
                    'stop_details', null,
                    'usage', json_build_object(
                        'input_tokens', 380 + g %% 90, 'cache_creation_input_tokens', 0,
                        'cache_read_input_tokens', 0,
                        'cache_creation', json_build_object(
                            'ephemeral_5m_input_tokens', 0, 'ephemeral_1h_input_tokens', 0),
                        'output_tokens', 30 + g %% 25, 'server_tool_use', null,
                        'service_tier', 'batch', 'inference_geo', null),
                    'container', null))
        end),
    %(landed)s::timestamptz
    - ((g / %(per_batch)s) %% (%(spread_days)s * 24 + 1)) * interval '1 hour'
from generate_series(%(first)s::bigint, %(last)s::bigint) as g
"""


@dataclass
class Timing:
    wall_s: float
    models_s: float
    per_model: dict[str, float]


def dbt(args: list[str]) -> Timing:
    started = time.perf_counter()
    res = dbtRunner().invoke(
        ["--quiet", *args, "--project-dir", str(ROOT), "--profiles-dir", str(ROOT)]
    )
    wall = time.perf_counter() - started
    if not res.success:
        failed = [
            f"{r.node.name}: {r.message}"
            for r in getattr(res.result, "results", [])
            if str(r.status) in {"error", "fail"}
        ]
        raise SystemExit(f"dbt {' '.join(args)} failed: {res.exception or failed}")
    per_model = {
        r.node.name: r.execution_time
        for r in getattr(res.result, "results", [])
        if r.node.resource_type == "model"
    }
    return Timing(wall, sum(per_model.values()), per_model)


def land(conninfo: str, first: int, last: int, landed: dt.datetime, spread_days: int) -> None:
    params = {
        "first": first,
        "last": last,
        "landed": landed,
        "spread_days": spread_days,
        "per_batch": LINES_PER_BATCH,
    }
    with psycopg.connect(conninfo) as conn:
        for statement in (BATCHES_SQL, REQUESTS_SQL, RESULTS_SQL):
            conn.execute(statement, params)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--new-fraction", type=float, default=0.01)
    parser.add_argument("--verbose", action="store_true", help="print each model's times")
    parser.add_argument(
        "--no-jit",
        action="store_true",
        help="run Postgres with jit=off (its JIT compile costs ~0.1-0.5 s per big CASE query)",
    )
    opts = parser.parse_args()
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ["BATCH_ENRICH_TARGET"] = "postgres"
    new_rows = max(1, int(opts.rows * opts.new_fraction))
    if opts.no_jit:
        os.environ["PGOPTIONS"] = "-c jit=off"

    with postgres() as db:
        dbt(["build"])
        now = dt.datetime.now(dt.UTC)
        land(db.conninfo, 1, opts.rows, now - dt.timedelta(days=1), 30)
        with psycopg.connect(db.conninfo) as conn:
            size = conn.execute(
                "select pg_size_pretty(sum(pg_column_size(line))) from enrich.results_raw"
            ).fetchone()
        dbt(["run", *SELECT_ALL])
        print(
            f"{opts.rows:,} result lines ({size[0] if size else '?'} of JSON) landed over 30 days"
        )

        first_new = (opts.rows // LINES_PER_BATCH + 1) * LINES_PER_BATCH
        land(db.conninfo, first_new, first_new + new_rows - 1, dt.datetime.now(dt.UTC), 0)
        print(f"+{new_rows:,} lines landed now ({opts.new_fraction:.1%})\n")

        rows = []
        for label, select, command in (
            ("build -s int_enrich__results_parsed+", SELECT_ALL, "build"),
            ("run parse models only", SELECT_PARSE, "run"),
        ):
            incremental = dbt([command, *select])
            full = dbt([command, *select, "--full-refresh"])
            rows.append((label, incremental, full))

        print(f"{'selection':40} {'incremental':>12} {'full refresh':>13} {'ratio':>7}")
        for label, inc, full in rows:
            print(f"{label + ' (wall)':40} {inc.wall_s:11.2f}s {full.wall_s:12.2f}s "
                  f"{inc.wall_s / full.wall_s:7.3f}")  # fmt: skip
            print(f"{label + ' (models)':40} {inc.models_s:11.2f}s {full.models_s:12.2f}s "
                  f"{inc.models_s / full.models_s:7.3f}")  # fmt: skip
        if opts.verbose:
            label, inc, full = rows[0]
            print(f"\nper model, {label}:")
            for name in sorted(inc.per_model, key=lambda n: -full.per_model.get(n, 0.0)):
                full_s = full.per_model.get(name, 0.0)
                print(f"  {name:38} {inc.per_model[name]:11.2f}s {full_s:12.2f}s")


if __name__ == "__main__":
    main()
