"""Submit benchmark: `enrich sync` submitting N flagged rows, as a user runs it.

    .venv/bin/python bench/bench_submit.py --rows 100000 --target duckdb|postgres|both
        [--tree DIR ...] [--runs 2] [--profile DIR]

Setup (not timed), as in bench_e2e.py: a copy of the project with the ticket_triage
enrichment over N fabricated tickets, `dbt build` without tests (ledger, input view,
flagged view); DuckDB in a file, Postgres in a private cluster. Then, per run and per
tree, an emulator of its own (a fresh process, so that its state does not carry over
from one run to the next) and one `python -m connector sync --json` child process run
from that tree (`--tree`: e.g. `git archive <commit> | tar -x -C /tmp/before`, to compare
the code before a change with the code after it in one run; the default is this
checkout). Between runs the ledger's submit tables are emptied, so every run reads the
same flagged rows and submits all of them (100,000 requests a batch at most).

Per run: wall, the child's CPU (user + sys, os.wait4) and peak RSS, the emulator's CPU,
and on Postgres the server's CPU; the trees alternate within each run, so load changes
hit each about equally. `--profile DIR` writes a cProfile of each child to DIR.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT
from bench_e2e import (
    BIN,
    NO_TESTS,
    Meters,
    Usage,
    copy_project,
    emulator,
    run_child,
    sync_counts,
    warehouse,
)

LEDGER_SCHEMA = "enrich"
SUBMIT_TABLES = ("shared_keys", "rejections", "deferrals", "requests", "batches")


@dataclass(frozen=True)
class Measured:
    target: str
    tree: str
    run: int
    usage: Usage
    counts: str


def reset_ledger(target: str, env: dict[str, str]) -> None:
    """Empty what a submit writes, so the flagged view selects every row again."""
    if target == "duckdb":
        import duckdb

        with duckdb.connect(env["BATCH_ENRICH_DUCKDB_PATH"]) as conn:
            for table in SUBMIT_TABLES:
                conn.execute(f'delete from "{LEDGER_SCHEMA}"."{table}"')  # noqa: S608 (constants)
            conn.execute("checkpoint")
        return
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    conninfo = make_conninfo(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                             dbname=env["PGDATABASE"])  # fmt: skip
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = sql.SQL(", ").join(sql.Identifier(LEDGER_SCHEMA, t) for t in SUBMIT_TABLES)
        conn.execute(sql.SQL("truncate {}").format(tables))
        conn.execute(sql.SQL("analyze {}").format(tables))


def run_target(args: argparse.Namespace, target: str, trees: list[Path]) -> list[Measured]:
    out: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
        run_dir = Path(tmp)
        project = copy_project(run_dir, package_tests=False)
        logs = run_dir / "logs"
        logs.mkdir()
        dirs = ["--project-dir", str(project), "--profiles-dir", str(project), "--target", target]
        with warehouse(target, run_dir, args.rows) as (wh_env, server_pid):
            env = os.environ | wh_env | {"ANTHROPIC_API_KEY": "bench-key",
                                         "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}  # fmt: skip
            started = time.perf_counter()
            with emulator(logs / "setup_emulator.log") as (_, emu):
                meters = Meters(emulator_pid=emu.pid, server_pid=None)
                run_child([str(BIN / "dbt"), "build", *dirs, *NO_TESTS], env,
                          logs / "setup_dbt.log", meters)  # fmt: skip
            print(f"{target}: setup {time.perf_counter() - started:.1f} s ({args.rows:,} rows)")
            for run in range(1, args.runs + 1):
                for tree in trees:
                    out.append(_one(args, target, tree, run, env, dirs, logs, server_pid))
                    reset_ledger(target, env)
    return out


def _one(
    args: argparse.Namespace,
    target: str,
    tree: Path,
    run: int,
    env: dict[str, str],
    dirs: list[str],
    logs: Path,
    server_pid: int | None,
) -> Measured:
    name = tree.name if tree != ROOT else "this checkout"
    log = logs / f"sync_{target}_{tree.name}_{run}.log"
    argv = [sys.executable]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        argv += ["-m", "cProfile", "-o", str(args.profile / f"{target}_{tree.name}_{run}.prof")]
    argv += ["-m", "connector", "sync", *dirs, "--json"]
    with emulator(logs / f"emulator_{target}_{tree.name}_{run}.log") as (base_url, emu):
        child_env = env | {"ANTHROPIC_BASE_URL": base_url, "PYTHONPATH": str(tree)}
        usage = run_child(argv, child_env, log, Meters(emu.pid, server_pid), cwd=tree)
    counts = sync_counts(log)
    print(f"  {target} run {run} {name}: {usage.wall:.1f} s wall, {usage.cpu:.1f} s CPU; "
          f"{counts}", flush=True)  # fmt: skip
    if f"submitted {args.rows}," not in counts:
        raise SystemExit(f"{name} did not submit every row ({counts}); see {log}")
    return Measured(target, name, run, usage, counts)


def print_report(args: argparse.Namespace, done: list[Measured], load0: str) -> None:
    head = ["warehouse", "tree", "runs", "wall s", "connector CPU s", "peak RSS MiB",
            "emulator CPU s", "Postgres server CPU s"]  # fmt: skip
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    groups: dict[tuple[str, str], list[Usage]] = {}
    for m in done:
        groups.setdefault((m.target, m.tree), []).append(m.usage)
    for (target, tree), usages in groups.items():
        server = [u.server_cpu for u in usages if u.server_cpu is not None]
        print("| " + " | ".join([
            target, tree, str(len(usages)),
            _spread([u.wall for u in usages]), _spread([u.cpu for u in usages]),
            _spread([u.max_rss_mib for u in usages], "{:.0f}"),
            _spread([u.emulator_cpu for u in usages]),
            _spread(server) if server else "-",
        ]) + " |")  # fmt: skip
    print()
    print(f"{args.rows:,} rows; load average (1, 5, 15 min): before {load0}, after "
          f"{_load()}; {os.cpu_count()} CPUs")  # fmt: skip


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    got = sorted(values)
    if len(got) == 1:
        return fmt.format(got[0])
    return f"{fmt.format(statistics.median(got))} ({fmt.format(got[0])}-{fmt.format(got[-1])})"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--target", choices=("duckdb", "postgres", "both"), default="both")
    parser.add_argument("--tree", type=Path, action="append", default=None, metavar="DIR",
                        help="a source tree to run the connector from (repeatable; default: "
                        "this checkout)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.tree] if args.tree else [ROOT]
    targets = ["duckdb", "postgres"] if args.target == "both" else [args.target]
    load0 = _load()
    done: list[Measured] = []
    for target in targets:
        done += run_target(args, target, trees)
    print_report(args, done, load0)


if __name__ == "__main__":
    main()
