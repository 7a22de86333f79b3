"""End to end at N rows: dbt build, enrich sync, enrich sync --wait, dbt build, per stage.

    .venv/bin/python bench/bench_e2e.py --rows 100000 --target duckdb|postgres [--keep DIR]

Setup (not timed): a copy of this project (as tests/harness/pipeline.py copies it) in a
temp dir, with one enrichment: the ticket_triage example, its input model pointed at
`bench_input.tickets`, a table of N fabricated tickets made by SQL `generate_series`
(the review_aspects example and the example seeds removed, the declaration's
max_tokens 100, and the max_pending_usd threshold raised so that the flag build passes
at any N). The package's own data and unit tests are off, as in a project that installs
the package (`batch_enrich_package_tests: false`; `--package-tests` turns them on, as in
this repository): the builds run the tests a user has, on their input, flagged and
enriched models. DuckDB: a file in the temp dir; Postgres: a private cluster (bench/_common.py,
fsync off, the server's defaults otherwise: JIT on). The emulator runs as its own
process (`python -m connector emulator --ended-after-polls 0`: a batch is ended at its
first retrieve).

Timed stages, each a child process, as a user runs them:

  (a) dbt build                              ledger, input view, flagged view, tests
  (b) enrich sync --json                     read the flagged view, submit (no --wait)
  (c) enrich sync --wait --poll-interval 0   poll, land the results
  (d) dbt build -s int_enrich__results_parsed int_enrich__results_validated
  (e) dbt build -s int_enrich__results_validated+
          --exclude int_enrich__results_parsed int_enrich__results_validated
      i.e. everything downstream of the parse models (request outcomes, failures, costs,
      history, reconciliation, backlog, the flagged view and the enriched table, their
      tests); (d) + (e) is the second `dbt build` of the loop without its repeats. (d)
      also runs the tests that dbt's indirect selection adds (the flagged view's
      max_pending_usd test depends on the validated model).

Extras, not in the total (skip them with --no-extras): (a) and (e) again with
`--exclude-resource-type test unit_test`, on the same state, right after each.

Per stage: wall seconds, the child's CPU (user + sys, from os.wait4) and its peak RSS
(ru_maxrss); for dbt, its run phase (run_results.json elapsed_time: the rest of the
wall is start-up and parsing) and the sum of its nodes' times; the emulator's CPU over
the stage (from /proc, never in our totals) and, on Postgres, the server's CPU
(postmaster and its backends, from /proc: the warehouse's work is there, not in the
child; on DuckDB it is in the child). Then the slowest dbt nodes of each dbt stage. One
run: the machine is shared, so the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT
from harness.postgres import PgCluster, fresh_database, running_cluster

COPIED = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")
ENRICHMENT = "ticket_triage"
MAX_TOKENS = 100
PARSE_MODELS = ("int_enrich__results_parsed", "int_enrich__results_validated")
NO_TESTS = ("--exclude-resource-type", "test", "unit_test")
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent

# The input: one row per ticket, ~250 bytes of prompt, written once for both warehouses;
# {rows} is a bound parameter (DuckDB) or a literal composed by psycopg.sql (Postgres).
INPUT_SQL = """
create schema bench_input;
create table bench_input.tickets as
select
    cast(g as integer) as ticket_id,
    'Customer ' || cast(g % 997 as text) || ' (Company ' || cast(g % 89 as text) || ')'
        as customer,
    'Export ' || cast(g % 13 as text) || ' fails since the update' as subject,
    'Since the update on day ' || cast(g % 28 as text) || ', exporting report '
    || cast(g as text) || ' to CSV stops at ' || cast(g % 100 as text)
    || ' percent with error ' || substr(md5(cast(g as text)), 1, 12)
    || '. We need it for the month-end close; please advise what to do.' as body,
    timestamp '2026-01-01 00:00:00' + cast(g % 2000000 as integer) * interval '1 second'
        as created_at
from generate_series(1, {rows}) as s(g);
"""

INPUT_MODEL = """\
{#- Input model of the ticket_triage enrichment, for bench/bench_e2e.py: fabricated
    tickets in bench_input.tickets, one row per ticket, with the prompt. -#}
with

tickets as (

    select * from bench_input.tickets

),

final as (

    select
        ticket_id,
        customer,
        subject,
        body,
        created_at,
        'Subject: ' || subject || chr(10) || chr(10) || body as prompt

    from tickets

)

select * from final
"""


# --- measuring


@dataclass(frozen=True)
class Usage:
    """One stage: the child's wall, CPU and peak RSS; the emulator's and the warehouse
    server's CPU over the same interval (None where there is no server)."""

    wall: float
    cpu: float
    max_rss_mib: float
    emulator_cpu: float
    server_cpu: float | None


@dataclass(frozen=True)
class DbtRun:
    """What dbt's target/run_results.json says of one invocation: the run phase (after
    start-up and parsing), the sum of the nodes' times (threads: may exceed the phase)
    and the slowest nodes."""

    elapsed: float
    node_sum: float
    slowest: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Stage:
    key: str
    label: str
    usage: Usage
    in_total: bool
    dbt: DbtRun | None


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces): state is [0]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_cpu(pid: int, *, with_children: bool = False) -> float:
    """User + system seconds of a live process (and of its reaped children)."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def tree_cpu(root_pid: int) -> float:
    """CPU of a server: the root (with the children it reaped, i.e. finished backends)
    plus its live children (open connections, background workers)."""
    total = process_cpu(root_pid, with_children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == root_pid:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class Meters:
    emulator_pid: int
    server_pid: int | None

    def read(self) -> tuple[float, float | None]:
        server = tree_cpu(self.server_pid) if self.server_pid else None
        return process_cpu(self.emulator_pid), server


def run_child(
    args: Sequence[str], env: dict[str, str], log: Path, meters: Meters, cwd: Path = ROOT
) -> Usage:
    """Run one command to its end; its own rusage comes from os.wait4 (nothing else of
    ours is reaped meanwhile, so the numbers are this child's)."""
    emu0, srv0 = meters.read()
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    emu1, srv1 = meters.read()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}; {log}:\n{tail}")
    return Usage(
        wall=wall,
        cpu=rusage.ru_utime + rusage.ru_stime,
        max_rss_mib=rusage.ru_maxrss / 1024,
        emulator_cpu=emu1 - emu0,
        server_cpu=None if srv0 is None or srv1 is None else srv1 - srv0,
    )


def dbt_run(project: Path, count: int) -> DbtRun:
    doc = json.loads((project / "target" / "run_results.json").read_text())
    results = doc["results"]
    ranked = sorted(results, key=lambda r: r["execution_time"], reverse=True)[:count]
    return DbtRun(
        elapsed=float(doc["elapsed_time"]),
        node_sum=sum(float(r["execution_time"]) for r in results),
        slowest=tuple((node_name(r["unique_id"]), float(r["execution_time"])) for r in ranked),
    )


def node_name(unique_id: str) -> str:
    """model.batch_enrich.NAME -> NAME; test.batch_enrich.NAME.HASH -> test NAME."""
    kind, _package, *rest = unique_id.split(".")
    if kind == "test":
        return f"test {rest[0]}"
    if kind == "unit_test":
        return f"unit test {rest[-1]}"
    return rest[-1]


# --- setup


def copy_project(dest: Path, package_tests: bool) -> Path:
    """The example project with ticket_triage alone, fed by bench_input.tickets."""
    project = dest / "project"
    for name in COPIED:
        src, dst = ROOT / name, project / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    examples = project / "models" / "examples"
    for sql in examples.glob("review_aspects*.sql"):
        sql.unlink()
    (examples / f"{ENRICHMENT}.sql").write_text(INPUT_MODEL)
    edit_yaml(examples / "_examples.yml", _one_enrichment)
    shutil.rmtree(project / "seeds" / "examples")
    edit_yaml(project / "seeds" / "_seeds.yml", _no_example_seeds)
    edit_yaml(project / "dbt_project.yml", _bench_vars(package_tests))
    return project


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _one_enrichment(doc: dict[str, Any]) -> None:
    doc["models"] = [m for m in doc["models"] if m["name"].startswith(ENRICHMENT)]
    for model in doc["models"]:
        if model["name"] == ENRICHMENT:
            model["config"]["meta"]["enrich"]["max_tokens"] = MAX_TOKENS
    for exposure in doc.get("exposures", []):
        exposure["depends_on"] = [d for d in exposure["depends_on"] if ENRICHMENT in d]


def _no_example_seeds(doc: dict[str, Any]) -> None:
    doc["seeds"] = [s for s in doc["seeds"] if not s["name"].startswith("example_")]


def _bench_vars(package_tests: bool) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["vars"]["batch_enrich_max_pending_usd"] = 10_000_000
        doc["vars"]["batch_enrich_package_tests"] = package_tests

    return change


def create_input_duckdb(path: Path, rows: int) -> None:
    import duckdb

    with duckdb.connect(str(path)) as conn:
        conn.execute(INPUT_SQL.format(rows="$rows"), {"rows": rows})


def create_input_postgres(conninfo: str, rows: int) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL(INPUT_SQL).format(rows=sql.Literal(rows)))
        conn.execute("alter table bench_input.tickets add primary key (ticket_id)")
        conn.execute("analyze bench_input.tickets")


def postmaster_pid(cluster: PgCluster) -> int | None:
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # not readable by this user: no server column


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator(log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    args = [sys.executable, "-m", "connector", "emulator", "--port", str(port), "--quiet",
            "--ended-after-polls", "0"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/_emulator/stats", timeout=1)  # noqa: S310
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the emulator did not start; see {log}")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def warehouse(target: str, run_dir: Path, rows: int) -> Iterator[tuple[dict[str, str], int | None]]:
    """Env for dbt and the connector, and the server's pid (Postgres); the input made."""
    env = {"BATCH_ENRICH_TARGET": target, "BATCH_ENRICH_SCHEMA": "analytics"}
    if target == "duckdb":
        path = run_dir / "bench.duckdb"
        create_input_duckdb(path, rows)
        yield env | {"BATCH_ENRICH_DUCKDB_PATH": str(path)}, None
        return
    with running_cluster() as cluster, fresh_database(cluster, prefix="bench") as db:
        create_input_postgres(db.conninfo, rows)
        yield env | db.env, postmaster_pid(cluster)


# --- the loop


def stages(project: Path, target: str, extras: bool) -> list[tuple[str, str, list[str], bool]]:
    """(key, label, argv, in the total), in the order they run."""
    dirs = ["--project-dir", str(project), "--profiles-dir", str(project), "--target", target]
    dbt = [str(BIN / "dbt"), "build", *dirs]
    enrich = [sys.executable, "-m", "connector", "sync", *dirs, "--json"]
    downstream = ["-s", f"{PARSE_MODELS[1]}+", "--exclude", *PARSE_MODELS]
    out: list[tuple[str, str, list[str], bool]] = [("a", "dbt build (flag)", dbt, True)]
    if extras:
        out.append(("a'", "  same, no tests", [*dbt, *NO_TESTS], False))
    out += [
        ("b", "enrich sync (submit)", enrich, True),
        ("c", "enrich sync --wait (land)", [*enrich, "--wait", "--poll-interval", "0"], True),
        ("d", "dbt build parse models", [*dbt, "-s", *PARSE_MODELS], True),
        ("e", "dbt build downstream", [*dbt, *downstream], True),
    ]
    if extras:
        out.append(("e'", "  same, no tests", [*dbt, *downstream, *NO_TESTS], False))
    return out


def sync_counts(log: Path) -> str:
    """What a `sync --json` reported: submitted and landed request counts."""
    text = log.read_text()
    report = json.loads(text[text.index("{") :])
    submitted = sum(int(s.get("submitted", 0)) for s in report.get("submitted", []))
    landed = sum(int(x.get("landed_lines", 0)) for x in report.get("landing", []))
    return f"submitted {submitted}, landed {landed} lines"


def check_outcome(target: str, env: dict[str, str]) -> str:
    query = f"select count(*), count(category) from analytics.{ENRICHMENT}__enriched"  # noqa: S608
    if target == "duckdb":
        import duckdb

        with duckdb.connect(env["BATCH_ENRICH_DUCKDB_PATH"], read_only=True) as conn:
            row = conn.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(_pg_conninfo(env)) as conn:
            row = conn.execute(query.encode()).fetchone()
    assert row is not None
    return f"{ENRICHMENT}__enriched: {row[0]} rows, {row[1]} with an output"


def _pg_conninfo(env: dict[str, str]) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=env["PGHOST"], port=env["PGPORT"], user=env["PGUSER"],
                         dbname=env["PGDATABASE"])  # fmt: skip


def run(args: argparse.Namespace, run_dir: Path) -> None:
    load_before = os.getloadavg()
    setup_started = time.perf_counter()
    project = copy_project(run_dir, args.package_tests)
    logs = run_dir / "logs"
    logs.mkdir()
    with warehouse(args.target, run_dir, args.rows) as (wh_env, server_pid), \
            emulator(logs / "emulator.log") as (base_url, emu):  # fmt: skip
        env = os.environ | wh_env
        env |= {
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "bench-key",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
        meters = Meters(emulator_pid=emu.pid, server_pid=server_pid)
        setup = time.perf_counter() - setup_started
        print(f"setup (not timed as a stage): {setup:.1f} s; {args.rows} rows, {args.target}")
        done: list[Stage] = []
        for key, label, argv, in_total in stages(project, args.target, not args.no_extras):
            log = logs / f"stage_{key.replace(chr(39), '_no_tests')}.log"
            usage = run_child(argv, env, log, meters)
            dbt = dbt_run(project, args.top) if argv[0].endswith("dbt") else None
            done.append(Stage(key, label, usage, in_total, dbt))
            note = f"; {sync_counts(log)}" if "connector" in argv else ""
            print(f"  ({key}) {label.strip()}: {usage.wall:.1f} s{note}", flush=True)
        emulator_peak = peak_rss_mib(emu.pid)
        outcome = check_outcome(args.target, env)
    print_report(args, done, emulator_peak, outcome, load_before, os.getloadavg())


def print_report(
    args: argparse.Namespace,
    done: list[Stage],
    emulator_peak: float,
    outcome: str,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    server = args.target == "postgres"
    head = ["stage", "wall s", "CPU s", "peak RSS MiB", "dbt run phase / node sum s",
            "emulator CPU s"] + (["Postgres server CPU s"] if server else [])  # fmt: skip
    rows = [head, ["---"] * len(head)]
    for s in done:
        u = s.usage
        phase = f"{s.dbt.elapsed:.1f} / {s.dbt.node_sum:.1f}" if s.dbt else ""
        rows.append([f"({s.key}) {s.label.strip()}", f"{u.wall:.1f}", f"{u.cpu:.1f}",
                     f"{u.max_rss_mib:.0f}", phase, f"{u.emulator_cpu:.1f}"]
                    + ([_opt(u.server_cpu)] if server else []))  # fmt: skip
    counted = [s.usage for s in done if s.in_total]
    wall = sum(u.wall for u in counted)
    rows.append(["**total (a)-(e)**", f"**{wall:.1f}**", f"{sum(u.cpu for u in counted):.1f}",
                 f"{max(u.max_rss_mib for u in counted):.0f} (max)", "",
                 f"{sum(u.emulator_cpu for u in counted):.1f}"]
                + ([_opt(_sum(u.server_cpu for u in counted))] if server else []))  # fmt: skip
    print()
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"total wall (a)-(e): {wall:.1f} s for {args.rows:,} rows "
          f"({args.rows / wall:,.0f} rows/s; the issue's goal: 1,000,000 in <= 180 s)")  # fmt: skip
    print(f"emulator: {sum(s.usage.emulator_cpu for s in done):.1f} s CPU over all stages "
          f"(not ours), peak RSS {emulator_peak:.0f} MiB")  # fmt: skip
    print(outcome)
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}"
          f"; {os.cpu_count()} CPUs")  # fmt: skip
    for s in done:
        if s.dbt:
            nodes = ", ".join(f"{name} {sec:.1f}" for name, sec in s.dbt.slowest)
            print(f"slowest nodes ({s.key}), s: {nodes}")


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _sum(values: Iterable[float | None]) -> float | None:
    known = list(values)
    return None if None in known else sum(v for v in known if v is not None)


def _load(values: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--target", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="run in DIR (created, must not exist) and leave it there")  # fmt: skip
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the builds without tests after (a) and (e)")  # fmt: skip
    parser.add_argument("--package-tests", action="store_true",
                        help="run the package's own data and unit tests too, as in this "
                        "repository (an installing project has them off)")  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="slowest dbt nodes shown per stage")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        run(args, args.keep.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
