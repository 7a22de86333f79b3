"""`enrich run`: the whole loop, for teams without an orchestrator.

    dbt build --select +NAME__flagged +NAME__enriched ... batch_enrich_model_prices   (once)
    repeat:
        enrich sync                          (land what ended, submit what is flagged)
        dbt build --select source:enrich_ledger+ package:batch_enrich   (after a landing)
    until a pass lands nothing, submits nothing and nothing is in flight, or --max-wait.

dbt runs in-process (connector.project.run_dbt), one command at a time, so a DuckDB file
is never opened by dbt and the connector at once. Each sync pass is an ordinary
`enrich sync` (no --wait): it takes the ledger's sync guard and lets it go.

One run is one command for budgets: after a pass that a budget held back (exit 4) or
that reported an error (exit 1), no more rows are submitted; the run only lands what is
in flight, builds, and exits with that code. Exit codes are sync's (docs/running.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.budgets import BudgetStop
from connector.dbt_invoke import run_dbt
from connector.errors import ConfigError, WarehouseLockedError
from connector.project import PRICE_SEED, Enrichment, Project, load_project
from connector.settings import Settings
from connector.sync import SyncReport, sync

log = logging.getLogger(__name__)

#: What the ledger feeds (every enrichment's flagged and enriched models and the user's
#: models built on them) and the whole package (its staging, intermediate and mart
#: models and the price seed the costs read).
LANDED_SELECTION = ("source:enrich_ledger+", "package:batch_enrich")


@dataclass
class RunReport:
    passes: int = 0
    builds: list[str] = field(default_factory=list)  # the dbt commands run, in order
    submitted: int = 0
    batches: list[str] = field(default_factory=list)
    landed_batches: int = 0
    landed_lines: int = 0
    rejected: int = 0
    in_flight: int = 0
    unresolved_intents: int = 0
    done: bool = False  # nothing left to submit, nothing in flight
    errors: list[str] = field(default_factory=list)
    budget_stops: list[BudgetStop] = field(default_factory=list)


def input_selection(enrichments: tuple[Enrichment, ...]) -> list[str]:
    """What the flagged views need, and the enriched tables (so they exist even when
    nothing is left to enrich): `+<flagged> +<enriched>` of each enrichment, and the
    price seed the budgets read (on a fresh project nothing has loaded it yet)."""
    names: list[str] = []
    for e in enrichments:
        names += [f"+{e.declaration.flagged_model}", f"+{e.name}__enriched"]
    return [*names, PRICE_SEED]


def run(settings: Settings, on_progress: Callable[[str], None] = lambda _: None) -> RunReport:
    """Build, then sync and build until done (or --max-wait); see the module doc."""
    report = RunReport()
    started = time.monotonic()
    project = load_project(settings.project_dir, settings.profiles_dir, settings.target)
    selected = project.select(settings.select)
    if not selected and not project.invalid:
        raise ConfigError(
            f"no enrichment is declared in {project.project_dir}: write one with "
            "`enrich init NAME --from MODEL --key COLUMN` (docs/getting-started.md)"
        )
    if selected:
        _build(report, project, ["--select", *input_selection(selected)], on_progress)
    submit = True
    first = True
    while True:
        pass_settings = dataclasses.replace(
            settings,
            wait=False,
            dry_run=False,
            submit=submit,
            lock_wait_seconds=settings.lock_wait_seconds if first else 0.0,
        )
        try:
            sync_report = sync(pass_settings, on_progress)
        except WarehouseLockedError as exc:
            if first:
                raise
            # another sync took its turn between our passes: it does the same work
            log.info("the ledger is busy (%s); trying again", exc)
            sync_report = None
        first = False
        landed = 0
        submitted = 0
        if sync_report is not None:
            landed, submitted = _count(report, sync_report)
            if sync_report.errors or sync_report.budget_stops:
                submit = False  # one run is one command: submit no more, land what is out
        if landed:
            _build(
                report,
                project,
                ["--select", *LANDED_SELECTION, "--exclude-resource-type", "unit_test"],
                on_progress,
            )
        waiting = report.in_flight + report.unresolved_intents
        if submitted == 0 and landed == 0 and waiting == 0 and sync_report is not None:
            report.done = not report.errors and not report.budget_stops
            return report
        if settings.max_wait_seconds is not None and (
            time.monotonic() - started > settings.max_wait_seconds
        ):
            report.errors.append(
                f"enrich run gave up after --max-wait {settings.max_wait_seconds:.0f}s with "
                f"{report.in_flight} requests in flight and "
                f"{report.unresolved_intents} unresolved intents; the next run picks them up"
            )
            return report
        if landed == 0:
            time.sleep(settings.poll_interval)


def _count(report: RunReport, sync_report: SyncReport) -> tuple[int, int]:
    """Add one pass to the run's totals; return (result lines landed, rows submitted)."""
    report.passes += 1
    landed_batches = sum(len(r.landed_batches) for r in sync_report.landing)
    landed = sum(r.landed_lines for r in sync_report.landing) or landed_batches
    submitted = sum(s.submitted for s in sync_report.submitted)
    report.landed_batches += landed_batches
    report.landed_lines += sum(r.landed_lines for r in sync_report.landing)
    report.submitted += submitted
    report.batches += [b for s in sync_report.submitted for b in s.batches]
    report.rejected += sum(len(s.rejected) for s in sync_report.submitted)
    report.in_flight = sync_report.in_flight
    report.unresolved_intents = sync_report.unresolved_intents
    # an invalid declaration is reported by every pass: once is enough
    report.errors += [e for e in sync_report.errors if e not in report.errors]
    report.budget_stops += sync_report.budget_stops
    return landed, submitted


def _build(
    report: RunReport, project: Project, args: list[str], on_progress: Callable[[str], None]
) -> None:
    command = ["build", *args]
    on_progress("dbt " + " ".join(command))
    report.builds.append("dbt " + " ".join(command))
    run_dbt(command, project.project_dir, project.profiles_dir, project.target.name)
