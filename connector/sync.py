"""`enrich sync`: finish pending work, then submit newly flagged rows.

Order: reconcile intents with unknown outcome → poll in-flight batches and land the
ended ones → submit what the flagged views select. With `wait`, keep polling until
nothing is in flight. Never blocks otherwise: a scheduler calls it every few minutes.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from connector.api import BatchApi
from connector.budgets import BudgetStop, RunBudget, oldest_first, select_within
from connector.dbt_invoke import run_dbt
from connector.errors import (
    AccountError,
    ConfigError,
    EnrichError,
    GuardLostError,
    WarehouseLockedError,
)
from connector.estimate import (
    Estimate,
    OutputModel,
    TokenModel,
    calibrated_models,
    estimate_enrichment,
    load_prices,
    uncounted_token_model,
    utc_day_start,
)
from connector.landing import LandReport, poll_and_land
from connector.ledger import Ledger, open_ledger
from connector.ledger.base import RequestRecord
from connector.policy import IN_FLIGHT
from connector.pricing import Price
from connector.project import Enrichment, Project, load_project
from connector.reconcile import reconcile
from connector.settings import Settings
from connector.submit import SubmitReport, submit_enrichment

log = logging.getLogger(__name__)

LEDGER_VERSION = 6


@dataclass
class SyncReport:
    submitted: list[SubmitReport] = field(default_factory=list)
    landing: list[LandReport] = field(default_factory=list)
    unresolved_intents: int = 0
    in_flight: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    estimates: list[Estimate] = field(default_factory=list)  # dry runs
    budget_stops: list[BudgetStop] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # batch ids found this run
    reconcile_problems: list[str] = field(default_factory=list)


def ensure_ledger(project: Project, ledger: Ledger) -> None:
    """Create or upgrade the ledger through the one DDL definition (the dbt macro)."""
    version = ledger.version()
    if version is not None and version >= LEDGER_VERSION:
        return
    log.info(
        "ledger schema %s is at version %s; applying version %d",
        project.ledger_schema,
        version,
        LEDGER_VERSION,
    )
    run_dbt(
        ["run-operation", "batch_enrich.ensure_ledger"],
        project.project_dir,
        project.profiles_dir,
        project.target.name,
    )
    if (ledger.version() or 0) < LEDGER_VERSION:
        raise ConfigError(
            f"ledger in schema '{project.ledger_schema}' is still below version {LEDGER_VERSION} "
            "after running batch_enrich.ensure_ledger"
        )


@contextmanager
def _gc_frozen() -> Iterator[None]:
    """Keep the garbage collector off what exists now (dbt's parsed project, imports):
    the submit loop allocates per row and each full collection would walk it all again
    (about a third of the CPU of a 100k-row submit). Unfrozen afterwards, so nothing
    that becomes garbage later is kept."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def opened(settings: Settings) -> Iterator[tuple[Project, Ledger]]:
    project = load_project(settings.project_dir, settings.profiles_dir, settings.target)
    with _ledger(project) as ledger:
        yield project, ledger


@contextmanager
def _ledger(project: Project) -> Iterator[Ledger]:
    ledger = open_ledger(project.target, project.ledger_schema)
    try:
        ensure_ledger(project, ledger)
        yield ledger
    finally:
        ledger.close()


def sync(settings: Settings, on_progress: Callable[[str], None] = lambda _: None) -> SyncReport:
    report = SyncReport(dry_run=settings.dry_run)
    project = load_project(settings.project_dir, settings.profiles_dir, settings.target)
    selected = project.select(settings.select)
    for model, message in project.invalid:
        if not settings.select or model in settings.select:
            report.errors.append(message)
    # a dry run changes nothing and needs no key (count_tokens is used when there is one)
    api = optional_api(settings) if settings.dry_run else BatchApi(timeout=settings.api_timeout)
    try:
        if settings.dry_run or api is None:
            with _ledger(project) as ledger:
                _submit_all(project, ledger, api, settings, selected, report, on_progress)
        else:
            _passes(project, api, settings, selected, report, on_progress)
    finally:
        if api is not None:
            api.close()
    return report


def optional_api(settings: Settings) -> BatchApi | None:
    """An API client for count_tokens, or None without a key (estimates fall back)."""
    try:
        return BatchApi(timeout=settings.api_timeout)
    except AccountError:
        return None


def _passes(
    project: Project,
    api: BatchApi,
    settings: Settings,
    selected: tuple[Enrichment, ...],
    report: SyncReport,
    on_progress: Callable[[str], None],
) -> None:
    def submit(ledger: Ledger) -> None:
        _submit_all(project, ledger, api, settings, selected, report, on_progress)

    guarded_passes(project, api, settings, report, on_progress, submit)


def guarded_passes(
    project: Project,
    api: BatchApi,
    settings: Settings,
    report: SyncReport,
    on_progress: Callable[[str], None],
    submit: Callable[[Ledger], None],
) -> None:
    """One pass (finish pending work, then `submit`), and with --wait more passes (finish
    pending work) until nothing is in flight. Each pass opens the ledger and holds its
    sync guard, and lets both go before the next: between polls, `dbt build` can open a
    DuckDB file and another sync can take its turn. `enrich pilot` passes its own
    `submit`."""
    started = time.monotonic()
    first = True
    while True:
        try:
            with _guarded(project, settings.lock_wait_seconds if first else 0.0) as ledger:
                _finish_pending(ledger, api, settings, report, on_progress)
                if first and settings.submit:
                    submit(ledger)
                report.in_flight = _in_flight(ledger)
        except WarehouseLockedError as exc:
            if first:
                raise
            log.info("between polls, the ledger is busy (%s); trying again", exc)
        first = False
        if not settings.wait or report.in_flight == 0:
            return
        if settings.max_wait_seconds is not None and (
            time.monotonic() - started > settings.max_wait_seconds
        ):
            report.errors.append(f"--wait gave up after {settings.max_wait_seconds:.0f}s")
            return
        time.sleep(settings.poll_interval)


@contextmanager
def _guarded(project: Project, wait_seconds: float) -> Iterator[Ledger]:
    """The ledger, opened, with its sync guard held. A DuckDB file another process
    holds is tried again until `wait_seconds` pass; on Postgres the guard itself waits
    that long."""
    deadline = time.monotonic() + wait_seconds
    ledger = _open_waiting(project, deadline)
    try:
        with ledger.sync_guard(max(0.0, deadline - time.monotonic())):
            # under the guard: syncs started together on a new project create the
            # ledger one after the other
            ensure_ledger(project, ledger)
            yield ledger
    finally:
        ledger.close()


def _open_waiting(project: Project, deadline: float) -> Ledger:
    while True:
        try:
            return open_ledger(project.target, project.ledger_schema)
        except WarehouseLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _finish_pending(
    ledger: Ledger,
    api: BatchApi,
    settings: Settings,
    report: SyncReport,
    on_progress: Callable[[str], None],
) -> None:
    """Reconcile intents whose create outcome is unknown, then poll and land."""
    rec = reconcile(ledger, api, settings)
    report.unresolved_intents = len(rec.unresolved)
    report.orphans += rec.orphans
    report.reconcile_problems += rec.problems
    report.landing.append(poll_and_land(ledger, api, settings, on_progress))
    ledger.tally_landed()  # what landed (or landed before version 4), for enrich status


def _submit_all(
    project: Project,
    ledger: Ledger,
    api: BatchApi | None,
    settings: Settings,
    selected: tuple[Enrichment, ...],
    report: SyncReport,
    on_progress: Callable[[str], None],
) -> None:
    """New work, within budgets, enrichment by enrichment: one failing stops only itself."""
    prices = load_prices(project, ledger)
    run_budget = RunBudget(settings)
    for enrichment in project.enrichments:
        if enrichment not in selected:
            continue
        try:
            with _gc_frozen():
                sub = _submit_within_budget(
                    ledger, api, enrichment, settings, prices, run_budget, report, on_progress
                )
        except (AccountError, GuardLostError):
            raise
        except EnrichError as exc:
            report.errors.append(str(exc))
            continue
        report.submitted.append(sub)
        if sub.stopped:
            report.errors.append(f"{enrichment.name}: {sub.stopped}")


def _submit_within_budget(
    ledger: Ledger,
    api: BatchApi | None,
    enrichment: Enrichment,
    settings: Settings,
    prices: dict[str, Price],
    run_budget: RunBudget,
    report: SyncReport,
    on_progress: Callable[[str], None],
) -> SubmitReport:
    """Submit an enrichment's flagged rows, or, under a budget, the oldest that fit."""
    decl = enrichment.declaration
    creator = None if settings.dry_run else api
    since = ledger.now()
    limit = run_budget.limit(decl, ledger, utc_day_start(since))
    price = prices.get(decl.model)
    estimate = None
    if settings.dry_run or limit is not None:
        estimate = estimate_enrichment(ledger, api, enrichment, settings, prices)
        if settings.dry_run:
            report.estimates.append(estimate)
    if limit is None:
        cost = request_cost(ledger, enrichment, price)
        sub = submit_enrichment(ledger, creator, enrichment, settings, on_progress, cost=cost)
    else:
        assert estimate is not None
        if price is None:
            stop = BudgetStop(enrichment.name, None, limit, estimate.requests, 0, 0.0, 0)
            report.budget_stops.append(stop)
            return SubmitReport(enrichment=enrichment.name, flagged=estimate.flagged)
        ordered = oldest_first(estimate.rows, ledger.deferrals(enrichment.name))
        chosen = select_within(ordered, price, estimate.output, limit.usd)
        sub = submit_enrichment(
            ledger,
            creator,
            enrichment,
            settings,
            on_progress,
            only=chosen.costs,
            # a dedupe key's cost goes with whichever of its rows is sent (once)
            cost=lambda record: chosen.sender_cost(record.custom_id),
        )
        if chosen.held_back:
            if not settings.dry_run:
                ledger.record_deferrals(enrichment.name, chosen.held_back)
            report.budget_stops.append(
                BudgetStop(
                    enrichment.name,
                    chosen.total_usd,
                    limit,
                    estimate.requests,
                    sub.submitted,
                    sub.estimated_usd,
                    len(chosen.held_back),
                )
            )
    run_budget.spend(sub.estimated_usd)
    if not settings.dry_run and not sub.stopped:
        ledger.prune_deferrals(enrichment.name, since)
    return sub


def request_cost(
    ledger: Ledger, enrichment: Enrichment, price: Price | None
) -> Callable[[RequestRecord], float | None]:
    """The estimate recorded with each request sent (None: no price for its model).

    Calibrated on the first row sent: with nothing flagged, a sync never reads the
    landed usage (4 s of a no-op sync on a million-request Postgres ledger)."""

    @functools.cache
    def models() -> tuple[TokenModel, OutputModel]:
        calibration = ledger.calibration(enrichment.name)
        tokens, output = calibrated_models(calibration, enrichment.declaration.prompt_version)
        return uncounted_token_model(tokens), output

    known: dict[tuple[int, int], float] = {}  # rows of one size cost the same

    def cost(record: RequestRecord) -> float | None:
        if price is None:
            return None
        size = (record.params_bytes, record.max_tokens)
        usd = known.get(size)
        if usd is None:
            model, output = models()
            usd = price.cost(
                input_tokens=model.tokens(record.params_bytes),
                output_tokens=output.expected(record.max_tokens),
            )
            if len(known) < 100_000:
                known[size] = usd
        return usd

    return cost


def _in_flight(ledger: Ledger) -> int:
    return sum(b.request_count for b in ledger.batches(IN_FLIGHT))
