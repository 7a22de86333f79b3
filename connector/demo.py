"""`make demo`: the whole pipeline on the example project, free and local.

Starts the Batch API emulator (no API key needed) and, for TARGET=postgres, a private
Postgres cluster; then runs the loop a user runs — `dbt build`, `enrich sync --wait`,
`dbt build` — twice (the second round retries what failed), and prints the estimate
before the first submission, then enriched rows, failures, costs and `enrich status`.
Like the CLI, this module sits outside the connector core: it is the one place besides
the tests that starts the emulator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
DEMO_KEY = "sk-ant-demo-emulator-only"
# a few failures, so the failures table and the retry round have something to show
DEMO_FAULTS = "item_api_error=0.03,item_expired=0.02,output_schema_violation=0.02,seed=5"

Query = Callable[[str], list[tuple[Any, ...]]]


@contextmanager
def _postgres() -> Iterator[Query]:
    # the private cluster of the test harness (initdb/pg_ctl as the postgres user)
    sys.path.insert(0, str(ROOT / "tests"))
    import psycopg
    from harness.postgres import (  # type: ignore[import-not-found,unused-ignore]
        fresh_database,
        running_cluster,
    )

    with running_cluster() as cluster, fresh_database(cluster, prefix="demo") as db:
        os.environ.update(db.env)

        def query(text: str) -> list[tuple[Any, ...]]:
            with psycopg.connect(db.conninfo) as conn:
                return [tuple(r) for r in conn.execute(text.encode()).fetchall()]

        yield query


@contextmanager
def _duckdb() -> Iterator[Query]:
    import duckdb

    path = ROOT / "demo.duckdb"
    for stale in (path, path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    os.environ["BATCH_ENRICH_DUCKDB_PATH"] = str(path)

    def query(text: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(path)) as conn:
            return [tuple(r) for r in conn.execute(text).fetchall()]

    yield query


def _dbt_build(console: Console) -> None:
    from connector.dbt_invoke import run_dbt

    started = time.monotonic()
    run_dbt(["build"], ROOT, ROOT, None)
    console.log(f"dbt build: ok ({time.monotonic() - started:.1f}s)")


def _estimate(console: Console) -> None:
    from connector.commands import estimate
    from connector.render import estimate_table
    from connector.settings import Settings

    estimate_table(estimate(Settings(project_dir=ROOT, profiles_dir=ROOT)), console)


def _status(console: Console) -> None:
    from connector.commands import status
    from connector.render import status_table
    from connector.settings import Settings

    status_table(status(Settings(project_dir=ROOT, profiles_dir=ROOT)), console)


def _sync(console: Console) -> None:
    from connector.settings import Settings
    from connector.sync import sync

    report = sync(Settings(project_dir=ROOT, profiles_dir=ROOT, wait=True, poll_interval=0.5))
    sent = {s.enrichment: s.submitted for s in report.submitted}
    landed = sum(r.landed_lines for r in report.landing)
    # names and messages from data are printed as literal Text, never as rich markup
    console.log(Text(f"enrich sync --wait: submitted {sent}, landed {landed} result lines"))
    for error in report.errors:
        console.log(Text(error, style="red"))


def _table(title: str, header: list[str], rows: list[tuple[Any, ...]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    return table


def _show(query: Query, console: Console) -> None:
    console.print(
        _table(
            "analytics.ticket_triage__enriched (5 of 300)",
            ["ticket_id", "subject", "category", "urgency", "summary", "batch_id", "attempt"],
            query(
                "select ticket_id, subject, category, urgency, summary, "
                "substr(batch_id, 1, 16) || '…', attempt "
                "from analytics.ticket_triage__enriched order by ticket_id limit 5"
            ),
        )
    )
    console.print(
        _table(
            "analytics.enrich_failures (by enrichment and reason)",
            ["enrichment", "failure_type", "example reason", "rows", "resolved later"],
            query(
                "select enrichment, failure_type, substr(min(failure_reason), 1, 48), count(*), "
                "sum(case when is_resolved_later then 1 else 0 end) "
                "from analytics.enrich_failures group by 1, 2 order by 1, 2"
            ),
        )
    )
    console.print(
        _table(
            "analytics.enrich_costs (batch prices, USD)",
            ["enrichment", "requests", "input_tokens", "output_tokens", "total_usd"],
            query(
                "select enrichment, count(*), sum(input_tokens), sum(output_tokens), "
                "round(cast(sum(total_usd) as numeric), 6) from analytics.enrich_costs "
                "group by 1 order by 1"
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["duckdb", "postgres"], default="duckdb")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 120)
    started = time.monotonic()
    os.environ["BATCH_ENRICH_TARGET"] = args.target
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    from connector.emulator import EmulatorConfig, FaultSpec, run_emulator

    with ExitStack() as stack:
        query = stack.enter_context(_postgres() if args.target == "postgres" else _duckdb())
        emulator = stack.enter_context(
            run_emulator(EmulatorConfig(faults=FaultSpec.parse(DEMO_FAULTS), seed=5))
        )
        os.environ["ANTHROPIC_BASE_URL"] = emulator.base_url
        os.environ["ANTHROPIC_API_KEY"] = DEMO_KEY
        console.rule(f"batch-enrich demo on {args.target}, against the local Batch API emulator")
        for round_no in (1, 2):
            console.log(f"[bold]round {round_no}[/bold]")
            _dbt_build(console)
            if round_no == 1:  # what it will cost, before anything is sent
                _estimate(console)
            _sync(console)
        _dbt_build(console)
        _show(query, console)
        _status(console)
        stats = emulator.stats()
    console.print(
        f"The emulator received {stats['requests_received']} requests in "
        f"{stats['batches_created']} batches; demo took {time.monotonic() - started:.0f}s.\n"
        "To run it against the real API: export ANTHROPIC_API_KEY=<your key>, leave "
        "ANTHROPIC_BASE_URL unset, then `dbt build && enrich sync --wait && dbt build`."
    )


if __name__ == "__main__":
    main()
