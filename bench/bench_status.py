"""Status at scale: `enrich status` and a sync with nothing to do, on a 1M-request ledger.

    .venv/bin/python bench/bench_status.py [--requests 1000000] [--warehouse postgres|duckdb|both]
        [--runs 3] [--profile DIR]

Builds a ledger of N requests in one enrichment quickly (bulk SQL from generate_series /
range, not the connector): N/100,000 landed batches, one result line per request
(98% succeeded with usage, 1% errored, 1% without a line: missing), on a private
Postgres and on a DuckDB file. The enrichment's flagged view is empty, so `enrich sync`
has nothing to land or submit. Then runs `enrich status --json` and `enrich sync` as
the user would (a fresh `python -m connector` process each time) and prints each one's
CPU seconds (the process's user + system) and wall seconds, the best of --runs; and
the CLI's start-up alone (`enrich --version`, `enrich status --help`). The targets:
under 2 s wall for status and a no-op sync; under 1 s of CPU for start-up.

The baseline, measured in the same run: the bulk-loaded ledger has no batch tallies
(ledger version 4), so the first `enrich status` counts every landed line itself, as
status did before tallies; the first sync then tallies the batches (printed once), and
the ratio of the two status runs is printed.

With --profile DIR, each command also runs once under cProfile (`-m cProfile -o`), and
`python -X importtime` writes its import log, into DIR.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, postgres
from harness.enrich_project import (
    dbt_prepare,
    default_declaration,
    write_project,
)

PER_BATCH = 100_000

# One statement per table, each text in the Postgres dialect; DuckDB gets `range`
# instead of generate_series and `json` instead of `jsonb` (see _ledger_sql).
BATCHES = """
insert into enrich.batches (submission_id, batch_id, enrichment, status, request_count,
    body_bytes, processing_status, succeeded_count, errored_count, canceled_count,
    expired_count, intent_at, submitted_at, api_created_at, ended_at, landed_at,
    landed_lines)
select 'sub_' || lpad(cast(k as text), 32, '0'), 'msgbatch_bench_' || cast(k as text), 'items',
    'landed', {per_batch}, 1000, 'ended', {per_batch}, 0, 0, 0,
    now() - interval '2 days', now() - interval '2 days', now() - interval '2 days',
    now() - interval '1 day', now() - interval '1 day', {per_batch}
from {series}(0, {batches_end}) as t(k)
"""

REQUESTS = """
insert into enrich.requests (submission_id, custom_id, enrichment, primary_key, request_hash,
    input_hash, attempt, flag_reason, model, prompt_version, max_tokens, params_bytes,
    estimated_usd)
select 'sub_' || lpad(cast(i / {per_batch} as text), 32, '0'), cast(i as text), 'items',
    cast('{{"item_id": ' || cast(i as text) || '}}' as {json}), md5(cast(i as text)),
    md5(cast(i as text)), 1, 'new', 'claude-haiku-4-5', 'v1', 200, 480, 0.0001
from {series}(0, {n_end}) as t(i)
"""

RESULTS = """
insert into enrich.results_raw (batch_id, custom_id, result_type, line, landed_at)
select 'msgbatch_bench_' || cast(i / {per_batch} as text), cast(i as text),
    case when i % 100 = 1 then 'errored' else 'succeeded' end,
    cast(case when i % 100 = 1 then
        '{{"custom_id":"' || cast(i as text) || '","result":{{"type":"errored","error":'
        || '{{"type":"error","error":{{"type":"'
        || case when i % 200 = 1 then 'invalid_request_error' else 'overloaded_error' end
        || '","message":"bench"}}}}}}}}'
    else
        '{{"custom_id":"' || cast(i as text) || '","result":{{"type":"succeeded","message":'
        || '{{"id":"msg_bench","type":"message","role":"assistant","model":"claude-haiku-4-5",'
        || '"content":[{{"type":"text","text":"{{\\"label\\":\\"good\\",\\"score\\":4}}"}}],'
        || '"stop_reason":"end_turn","usage":{{"input_tokens":' || cast(120 + i % 50 as text)
        || ',"output_tokens":' || cast(20 + i % 30 as text)
        || ',"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}}}}}}'
    end as json),
    now() - interval '1 day'
from {series}(0, {n_end}) as t(i)
where i % 100 <> 2
"""


def _ledger_sql(kind: str, n: int) -> list[str]:
    values = {
        "per_batch": min(PER_BATCH, n),
        "batches": -(-n // PER_BATCH),
        # generate_series includes its end, DuckDB's range does not
        "n_end": n - 1 if kind == "postgres" else n,
        "batches_end": -(-n // PER_BATCH) - (1 if kind == "postgres" else 0),
        "series": "generate_series" if kind == "postgres" else "range",
        "json": "jsonb" if kind == "postgres" else "json",
    }
    return [t.format(**values) for t in (BATCHES, REQUESTS, RESULTS)]


def _run(
    args: list[str], env: Mapping[str, str], python_flags: tuple[str, ...] = ()
) -> tuple[float, float, str]:
    """CPU seconds (user + system of the child) and wall seconds of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *python_flags, "-m", "connector", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(
            f"enrich {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    return cpu, wall, proc.stdout


def _measure(
    kind: str, project: Path, env: Mapping[str, str], runs: int, profile: Path | None
) -> None:
    where = ["--project-dir", str(project), "--profiles-dir", str(project)]
    status = ["status", "--json", *where]
    print(f"\n{kind}:")
    print(f"  {'command':44} {'CPU s':>7} {'wall s':>7}")

    def show(label: str, cpu: float, wall: float) -> None:
        print(f"  {label:44} {cpu:7.2f} {wall:7.2f}")

    # the baseline, in this run: the ledger as bulk-loaded has no batch tallies, so
    # status counts every landed line itself (what status did before ledger version 4)
    untallied = _run(status, env)[:2]
    show("enrich status, batches not tallied (baseline)", *untallied)
    show("first enrich sync (tallies the landed batches)", *_run(["sync", *where], env)[:2])
    commands = {
        "start-up (enrich --version)": ["--version"],
        "start-up (enrich status --help)": ["status", "--help"],
        "enrich status --json": status,
        "enrich sync (nothing to do)": ["sync", *where],
    }
    best: dict[str, tuple[float, float]] = {}
    for label, args in commands.items():
        best[label] = min((_run(args, env)[:2] for _ in range(runs)), key=lambda m: m[1])
        show(label, *best[label])
        if profile is not None:
            stem = f"{kind}-{args[0].strip('-')}"
            _run(args, env, ("-m", "cProfile", "-o", str(profile / f"{stem}.prof")))
            imports = subprocess.run(
                [sys.executable, "-X", "importtime", "-m", "connector", *args],
                env=dict(env), capture_output=True, text=True, check=False,
            )  # fmt: skip
            (profile / f"{stem}.importtime.txt").write_text(imports.stderr)
    tallied = best["enrich status --json"]
    print(
        f"  status, untallied / tallied: {untallied[1] / tallied[1]:.1f}x wall, "
        f"{untallied[0] / tallied[0]:.1f}x CPU"
    )


def _fill_postgres(conninfo: str, n: int) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        for text in _ledger_sql("postgres", n):
            conn.execute(text)  # type: ignore[arg-type]
        conn.execute("vacuum analyze enrich.batches, enrich.requests, enrich.results_raw")


def _fill_duckdb(path: Path, n: int) -> None:
    import duckdb

    with duckdb.connect(str(path)) as conn:
        for text in _ledger_sql("duckdb", n):
            conn.execute(text)
        conn.execute("checkpoint")


def _prepare(root: Path, env: dict[str, str]) -> Path:
    """The project (one enrichment, an empty flagged view), parsed; its ledger created."""
    project = write_project(root, {"items": default_declaration()})
    dbt_prepare(project, env)
    # the ledger, through its one definition; in another process, which lets the
    # DuckDB file go when it ends
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [str(dbt), "--quiet", "run-operation", "batch_enrich.ensure_ledger",
         "--project-dir", str(project), "--profiles-dir", str(project)],
        env=env, check=True,
    )  # fmt: skip
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--warehouse", choices=("postgres", "duckdb", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    kinds = ("postgres", "duckdb") if args.warehouse == "both" else (args.warehouse,)
    base_env = dict(os.environ)
    base_env.update(
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        ANTHROPIC_API_KEY="bench-key-not-used",
        # nothing is in flight: a sync with nothing to do makes no API call (a call
        # here would be refused, and the sync would exit non-zero)
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        PYTHONPATH=str(ROOT),
    )
    print(f"ledger: {args.requests:,} requests, {-(-args.requests // PER_BATCH)} landed batches")
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "postgres":
                with postgres() as db:
                    env = base_env | db.env | {"BATCH_ENRICH_TARGET": "postgres"}
                    project = _prepare(Path(tmp), env)
                    _source_postgres(db.conninfo)
                    started = time.perf_counter()
                    _fill_postgres(db.conninfo, args.requests)
                    print(f"\npostgres ledger built in {time.perf_counter() - started:.1f} s")
                    _measure(kind, project, env, args.runs, args.profile)
            else:
                path = Path(tmp) / "warehouse.duckdb"
                env = base_env | {
                    "BATCH_ENRICH_TARGET": "duckdb",
                    "BATCH_ENRICH_DUCKDB_PATH": str(path),
                }
                project = _prepare(Path(tmp), env)
                _source_duckdb(path)
                started = time.perf_counter()
                _fill_duckdb(path, args.requests)
                print(f"\nduckdb ledger built in {time.perf_counter() - started:.1f} s")
                _measure(kind, project, env, args.runs, args.profile)


FLAGGED_VIEW = (
    "create or replace view analytics.items__flagged as select item_id, prompt from app.items_src"
)


def _source_postgres(conninfo: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("create schema if not exists app")
        conn.execute("create schema if not exists analytics")
        conn.execute("create table app.items_src (item_id integer, prompt text)")
        conn.execute(FLAGGED_VIEW)


def _source_duckdb(path: Path) -> None:
    import duckdb

    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema if not exists app")
        conn.execute("create schema if not exists analytics")
        conn.execute("create table app.items_src (item_id integer, prompt text)")
        conn.execute(FLAGGED_VIEW)


if __name__ == "__main__":
    main()
