"""Peak RSS of `enrich sync --wait` landing N lines, and of a budgeted sync of N rows.

    .venv/bin/python bench/bench_landing_memory.py --target duckdb|postgres
        [--rows 100000 1000000] [--repeat 2] [--where]

For each N (one run; the ratios compare N with the smallest N):

  setup, not measured: a copy of the project with the ticket_triage enrichment over N
  fabricated tickets, the emulator in its own process (bench_e2e.py's setup), then
  `dbt build` (the flagged view selects N rows);
  (budget) `enrich sync --max-usd 0.05`: a budgeted sync of the N flagged rows: the
      estimate reads every flagged row, a few are sent, the rest are held back (deferrals);
  setup, not measured: `enrich sync` submits the rest (N / 99,999 batches);
  (land) `enrich sync --wait --poll-interval 0`: polls and lands the N result lines
      (about 520 bytes each) and looks for more work, as a user runs it; measured
      --repeat times, the ledger put back to `submitted` with nothing landed between.

Each measured step is a fresh `python -m connector` process; its peak RSS is VmHWM from
/proc/self/status, read as it exits (not ru_maxrss, which on Linux starts from the
parent's peak). With --where, the child also samples its RSS every 20 ms and prints,
for each new peak (in steps of 16 MiB), the innermost connector functions on its main
thread at that moment: what the RSS is made of, and where it grows.
Targets (issue 10, item 3): landing N=1M <= 1.2 x N=100k and < 150 MB, both warehouses;
a budgeted sync of 1M flagged rows < 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT
from bench_e2e import BIN, _pg_conninfo, copy_project, edit_yaml, emulator, warehouse

BUDGET_USD = "0.05"

# Runs `python -m connector ARGS` in this process and reports its peak RSS as it exits.
CHILD = r"""
import atexit, os, runpy, sys, threading, time

def _status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0

def _report():
    sys.stderr.write(f"BENCH_PEAK_KIB {_status('VmHWM:')}\n")

def _where():
    main = threading.main_thread().ident
    shown = 0
    while True:
        time.sleep(0.02)
        rss = _status('VmRSS:')
        if rss < shown + 16 * 1024:
            continue
        shown = rss
        frame = sys._current_frames().get(main)
        names = []
        while frame is not None and len(names) < 4:
            code = frame.f_code
            if 'connector' in code.co_filename:
                names.append(code.co_name)
            frame = frame.f_back
        sys.stderr.write(f"BENCH_WHERE {rss // 1024} MiB {' < '.join(names)}\n")

atexit.register(_report)
if os.environ.get('BENCH_WHERE'):
    threading.Thread(target=_where, daemon=True).start()
sys.argv = ['enrich', *sys.argv[1:]]
runpy.run_module('connector', run_name='__main__', alter_sys=True)
"""


def run_connector(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """(peak RSS MiB, wall s) of one `python -m connector ARGS`; its output in log."""
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, *args], env=env, cwd=ROOT, stdout=out, stderr=out
        )
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if proc.returncode not in (0, 4):  # 4: a budget held rows back (expected)
        raise SystemExit(f"enrich {' '.join(args)} exited {proc.returncode}:\n{text[-4000:]}")
    peak = [int(line.split()[1]) for line in text.splitlines() if line.startswith("BENCH_PEAK")]
    return peak[-1] / 1024, wall


def sync_report(log: Path) -> dict[str, object]:
    text = log.read_text(errors="replace")
    start = text.index("{")
    report: dict[str, object] = json.JSONDecoder().raw_decode(text[start:])[0]
    return report


def landed_lines(log: Path) -> int:
    landing = sync_report(log).get("landing", [])
    assert isinstance(landing, list)
    return sum(int(x.get("landed_lines", 0)) for x in landing)


def where_lines(log: Path) -> list[str]:
    return [
        line.removeprefix("BENCH_WHERE ")
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("BENCH_WHERE")
    ]


def reset_landing(target: str, env: dict[str, str], schema: str = "enrich") -> None:
    """Put every landed batch back to `submitted` with none of its lines landed."""
    statements = [
        f"delete from {schema}.results_raw",  # noqa: S608 (the bench's own schema)
        f"delete from {schema}.batch_tallies",  # noqa: S608
        f"update {schema}.batches set status = 'submitted', landed_at = null, "  # noqa: S608
        "landed_lines = null, last_polled_at = null where status = 'landed'",
    ]
    if target == "duckdb":
        import duckdb

        with duckdb.connect(env["BATCH_ENRICH_DUCKDB_PATH"]) as conn:
            for statement in statements:
                conn.execute(statement)
            conn.execute("checkpoint")
        return
    import psycopg

    with psycopg.connect(_pg_conninfo(env), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())
        conn.execute(b"vacuum analyze")


def measure(args: argparse.Namespace, rows: int, run_dir: Path) -> dict[str, list[float]]:
    project = copy_project(run_dir, package_tests=False)
    logs = run_dir / "logs"
    logs.mkdir()
    dirs = ["--project-dir", str(project), "--profiles-dir", str(project), "--target", args.target]
    got: dict[str, list[float]] = {"budget": []}
    with (
        warehouse(args.target, run_dir, rows) as (wh_env, _server),
        emulator(logs / "emulator.log") as (base_url, _emu),
    ):
        env = os.environ | wh_env
        env |= {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "bench-key",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
        if args.where:
            env["BENCH_WHERE"] = "1"
        build = subprocess.run(
            [str(BIN / "dbt"), "build", *dirs], env=env, cwd=ROOT, capture_output=True
        )
        if build.returncode != 0:
            raise SystemExit(build.stdout.decode()[-4000:])
        budget_log = logs / "budget.log"
        peak, wall = run_connector(
            ["sync", *dirs, "--json", "--max-usd", BUDGET_USD], env, budget_log
        )
        got["budget"].append(peak)
        print(f"  {rows:>9,} budgeted sync: peak RSS {peak:6.0f} MiB, {wall:5.1f} s", flush=True)
        for line in where_lines(budget_log):
            print(f"      {line}")
        run_connector(["sync", *dirs, "--json"], env, logs / "submit.log")
        first = True
        for limit in args.memory_limits:
            set_memory_limit(project, args.target, limit)
            for r in range(args.repeat):
                if not first:
                    reset_landing(args.target, env)
                first = False
                log = logs / f"land{limit}{r}.log"
                peak, wall = run_connector(
                    ["sync", *dirs, "--json", "--wait", "--poll-interval", "0"], env, log
                )
                got.setdefault("land" if limit == "default" else f"land {limit}", []).append(peak)
                lines = landed_lines(log)
                print(
                    f"  {rows:>9,} landing {lines:,} lines (memory_limit {limit}): "
                    f"peak RSS {peak:6.0f} MiB, {wall:5.1f} s",
                    flush=True,
                )
                for line in where_lines(log):
                    print(f"      {line}")
    return got


def set_memory_limit(project: Path, target: str, limit: str) -> None:
    """DuckDB: the profile's `config_options: {memory_limit: ...}` ("default": none,
    DuckDB's own default applies)."""
    if target != "duckdb":
        return

    def change(doc: dict[str, Any]) -> None:
        output = doc["batch_enrich"]["outputs"]["duckdb"]
        output.pop("config_options", None)
        if limit != "default":
            output["config_options"] = {"memory_limit": limit}

    edit_yaml(project / "profiles.yml", change)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2, help="landings measured per N")
    parser.add_argument("--where", action="store_true", help="sample where the RSS grows")
    parser.add_argument(
        "--memory-limits",
        nargs="+",
        default=["default"],
        help="DuckDB: land again under each profile memory_limit (default: none set)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[int, dict[str, list[float]]] = {}
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
            results[rows] = measure(args, rows, Path(tmp))
    small = min(results)
    print(f"\n{args.target}: peak RSS MiB (best of the landings; load average before "
          f"{' '.join(f'{v:.2f}' for v in load_before)}, after "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())})")  # fmt: skip
    ways = [k for k in results[small] if k != "budget"]
    print("| rows | budgeted sync | " + " | ".join(ways) + " |")
    print("|---|---|" + "---|" * len(ways))
    for rows, got in results.items():
        cells = [f"{min(got[w]):.0f} ({min(got[w]) / min(results[small][w]):.2f}x)" for w in ways]
        print(f"| {rows:,} | {min(got['budget']):.0f} | " + " | ".join(cells) + " |")
    big = max(results)
    for way in ways:
        ratio = min(results[big][way]) / min(results[small][way])
        print(
            f"{way}: {big:,} vs {small:,} lines: {ratio:.2f} (target <= 1.2), "
            f"{min(results[big][way]) * 1.048576:.0f} MB (target < 150)"
        )
    print(
        f"budgeted sync of {big:,} flagged rows: "
        f"{min(results[big]['budget']) * 1.048576:.0f} MB (target < 300)"
    )


if __name__ == "__main__":
    main()
