"""The `enrich` command line: thin. Each command parses options, builds Settings, calls
one function and renders its result (`connector.render`).

Exit codes: 0 done or progressing; 1 an error stopped part of the work; 2 usage or
configuration; 3 the API refused the account; 4 a budget stopped submission;
5 the warehouse file or the ledger's sync guard is held by another process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from connector import __version__
from connector.errors import EXIT_BUDGET, EXIT_ERROR, EXIT_OK, EnrichError
from connector.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = (
    "Exit codes: 0 done or progressing; 1 error; 2 usage or configuration; "
    "3 account refused by the API (401/403/billing); 4 budget; 5 warehouse or ledger busy."
)


def project_options(func: F) -> F:
    """Options every warehouse command shares; resolved the way dbt resolves them."""
    return _project_options(func, select=True)


def _project_options(func: F, *, select: bool) -> F:
    options = [
        click.option(
            "--project-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=Path(),
            show_default=True,
            envvar="DBT_PROJECT_DIR",
            help="dbt project whose manifest declares the enrichments.",
        ),
        click.option(
            "--profiles-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Where profiles.yml is (default: $DBT_PROFILES_DIR, the project, ~/.dbt).",
        ),
        click.option(
            "--target", "-t", default=None, help="profiles.yml target (default: the profile's)."
        ),
        *(
            [
                click.option(
                    "--select",
                    "-s",
                    "select",
                    multiple=True,
                    help="Only these enrichments (repeatable). Default: all.",
                )
            ]
            if select
            else []
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print one JSON document (for machines)."
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            help="More logging (-v info, -vv debug; the SDK's HTTP log at info, no bodies).",
        ),
        click.option(
            "--debug-http",
            is_flag=True,
            expose_value=False,
            callback=_remember_debug_http,
            help="Also log the SDK's HTTP requests in full at debug level. Their bodies "
            "hold your prompts (count_tokens, batch create): for debugging only.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: The SDK's loggers. At debug level they log every request's body (the prompts of
#: count_tokens and of a batch create), so they never go below INFO without --debug-http.
SDK_LOGGERS = ("anthropic", "httpx2")


def _remember_debug_http(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["debug_http"] = value
    return value


def _setup_logging(verbose: int) -> None:
    """Log to stderr from our loggers (and the SDK's at -vv). dbt, imported later,
    manages the root logger itself, so the handler sits on named loggers.

    The SDK's loggers stay at INFO at most (request lines, retries; no bodies), even at
    -vv or with ANTHROPIC_LOG=debug, unless --debug-http was given."""
    if os.environ.get("ANTHROPIC_LOG"):
        # the SDK's import reads ANTHROPIC_LOG and sets its loggers' levels: import it
        # now, so that the levels below win (without it, it is imported on first use)
        import anthropic  # noqa: F401

    context = click.get_current_context(silent=True)
    debug_http = bool(context is not None and context.meta.get("debug_http"))
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    names = ["connector"] + (list(SDK_LOGGERS) if verbose >= 2 or debug_http else [])
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if debug_http:
            logger.setLevel(logging.DEBUG)
        elif logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    _check_package_version()


def _check_package_version() -> None:
    """Warn when the project's batch_enrich dbt package and this CLI differ in patch
    version; stop (exit 2) when they differ in major or minor (connector.version_check)."""
    from connector.version_check import check

    context = click.get_current_context(silent=True)
    if context is None or "project_dir" not in context.params:
        return
    try:
        warning = check(Path(context.params["project_dir"]))
    except EnrichError as exc:
        _fail(exc, bool(context.params.get("as_json")))
        return
    if warning:
        click.echo(f"warning: {warning}", err=True)


def _fail(exc: EnrichError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
    else:
        click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="enrich")
def main() -> None:
    """batch-enrich: enrich warehouse rows with Claude through the Message Batches API.

    dbt flags the rows; `enrich sync` submits them, keeps a crash-safe ledger in the
    warehouse and lands the raw results exactly once; dbt parses them. The API key is
    read from ANTHROPIC_API_KEY (and the endpoint from ANTHROPIC_BASE_URL).
    """


def estimate_options(func: F) -> F:
    """How input tokens are counted (`estimate` and `sync --dry-run`)."""
    options = [
        click.option(
            "--exact",
            is_flag=True,
            help="Count every request with count_tokens instead of a sample (slower).",
        ),
        click.option(
            "--sample",
            "sample_size",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="Requests counted with count_tokens per enrichment; the rest are scaled "
            "by request bytes.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def poll_options(func: F) -> F:
    """Waiting, polling and the sync guard: `sync` and `pilot` (one pass of each holds
    the guard and lands what ended)."""
    options = [
        click.option("--wait", is_flag=True, help="Block, polling, until nothing is in flight."),
        click.option(
            "--poll-interval",
            type=click.FloatRange(min=0),
            default=30.0,
            show_default=True,
            help="Seconds between retrieves of one batch (at most one per batch per interval).",
        ),
        click.option(
            "--max-wait",
            type=click.FloatRange(min=0),
            default=None,
            help="With --wait, give up after this many seconds (exit 1).",
        ),
        click.option(
            "--reconcile-grace",
            type=click.FloatRange(min=0),
            default=120.0,
            show_default=True,
            help="Seconds before an intent whose create answer was lost, with no batch "
            "carrying its marker on the API, is abandoned and its rows released (counted "
            "from the first sync that finds it unresolved).",
        ),
        click.option(
            "--lock-wait",
            type=click.FloatRange(min=0),
            default=0.0,
            show_default=True,
            help="Seconds to wait for another sync of the same ledger to finish; after "
            "that, exit 5 having changed nothing.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command(epilog=EXIT_CODES_HELP)
@project_options
@poll_options
@click.option("--dry-run", is_flag=True, help="Show what would be submitted; change nothing.")
@click.option(
    "--max-usd",
    type=click.FloatRange(min=0),
    default=None,
    help="Submit at most this many (estimated) dollars in this run, over all enrichments; "
    "the oldest flagged rows go first, the rest wait (exit 4).",
)
@click.option(
    "--approve-usd",
    type=click.FloatRange(min=0),
    default=None,
    help="Approve up to this many dollars for this run, in place of budget_usd, "
    "budget_usd_per_day and --max-usd.",
)
@estimate_options
def sync(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    as_json: bool,
    verbose: int,
    wait: bool,
    poll_interval: float,
    dry_run: bool,
    max_wait: float | None,
    reconcile_grace: float,
    lock_wait: float,
    max_usd: float | None,
    approve_usd: float | None,
    exact: bool,
    sample_size: int,
) -> None:
    """Land finished batches, then submit newly flagged rows.

    Finishes pending work first (reconciles intents whose create answer was lost,
    polls in-flight batches, lands ended ones exactly once), then submits what each
    enrichment's flagged view selects, within its budgets (budget_usd,
    budget_usd_per_day, --max-usd). Exits without blocking unless --wait. --dry-run
    prints the estimate and what would be submitted, and changes nothing.
    """
    from connector import render
    from connector.sync import sync as run_sync

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        select=select,
        wait=wait,
        poll_interval=poll_interval,
        dry_run=dry_run,
        max_wait_seconds=max_wait,
        reconcile_grace_seconds=reconcile_grace,
        lock_wait_seconds=lock_wait,
        max_usd=max_usd,
        approve_usd=approve_usd,
        exact=exact,
        sample_size=sample_size,
    )
    console = Console(stderr=as_json)
    # progress lines name enrichments and batches: literal text, never rich markup
    progress: Callable[[str], None] = (
        (lambda _: None) if as_json else (lambda message: console.log(render.plain(message)))
    )
    try:
        with console.status("syncing", spinner="dots") if not as_json and wait else nullcontext():
            report = run_sync(settings, progress)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json(report))
    else:
        render.sync_summary(report, console)
    for stop in report.budget_stops:
        click.echo(f"budget: {stop.message}", err=True)
    if report.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_BUDGET if report.budget_stops else EXIT_OK)


@main.command(epilog=EXIT_CODES_HELP)
@project_options
@estimate_options
def estimate(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    as_json: bool,
    verbose: int,
    exact: bool,
    sample_size: int,
) -> None:
    """Estimate what `sync` would submit now: requests, tokens and dollars.

    Input tokens: count_tokens on a sample scaled by request bytes (--exact: every
    request); without an API key, a ratio calibrated on landed usage of the same
    prompt_version, else 4 bytes per token. Output tokens: the landed mean, else half
    of max_tokens; worst case: max_tokens. Dollars: the price seed at batch prices.
    """
    from connector import render
    from connector.commands import estimate as run_estimate

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        select=select,
        exact=exact,
        sample_size=sample_size,
    )
    try:
        estimates = run_estimate(settings)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json({"estimates": estimates}))
    else:
        render.estimate_table(estimates, Console())


@main.command(epilog=EXIT_CODES_HELP)
@project_options
def status(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    as_json: bool,
    verbose: int,
) -> None:
    """Per enrichment: batches and requests in flight, landed, failed, rejected; spend;
    the backlog (rows flagged by reason and the oldest one's age, rows in flight)."""
    from connector import render
    from connector.commands import status as run_status

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir, profiles_dir=profiles_dir, target=target, select=select
    )
    try:
        rows = run_status(settings)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json({"enrichments": rows}))
    else:
        render.status_table(rows, Console())


@main.command(epilog=EXIT_CODES_HELP)
@project_options
@click.option("--batch", "batch_id", default=None, help="Cancel this batch (msgbatch_...).")
def cancel(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    as_json: bool,
    verbose: int,
    batch_id: str | None,
) -> None:
    """Cancel one in-flight batch (--batch ID) or all of some enrichments (--select)."""
    from connector import render
    from connector.commands import cancel as run_cancel

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir, profiles_dir=profiles_dir, target=target, select=select
    )
    try:
        report = run_cancel(settings, batch_id)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json(report))
    else:
        render.cancel_summary(report, Console())


@main.command("init", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option(
    "--from",
    "source_model",
    required=True,
    help="The dbt model whose rows are enriched (the input model selects from ref(MODEL)).",
)
@click.option(
    "--key",
    "key",
    required=True,
    help="The column(s) that identify a row of MODEL, comma-separated: --key id or "
    "--key order_id,line_no.",
)
@click.option(
    "--output-schema",
    "output_schema",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A JSON Schema (.json, .yml) for structured output, checked and written into "
    "the declaration.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default=True,
    envvar="DBT_PROJECT_DIR",
    help="The dbt project to write into.",
)
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the files, relative to the project (default: models/enrichments/NAME).",
)
@click.option(
    "--model",
    "claude_model",
    default="claude-haiku-4-5",
    show_default=True,
    help="The Claude model of the declaration.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="max_tokens of the declaration: the longest answer a row may get.",
)
def init_command(
    name: str,
    source_model: str,
    key: str,
    output_schema: Path | None,
    project_dir: Path,
    folder: Path | None,
    claude_model: str,
    max_tokens: int,
) -> None:
    """Write a new enrichment's files into your dbt project.

    NAME.sql (the input model: the key columns and a `prompt` from ref(MODEL)),
    _NAME.yml (its meta.enrich declaration), NAME__flagged.sql and NAME__enriched.sql,
    in models/enrichments/NAME/. Overwrites nothing: exits 2 naming a file that exists.
    """
    from connector.scaffold import InitRequest, init, parse_keys

    _check_package_version()
    request = InitRequest(
        name=name,
        source_model=source_model,
        keys=parse_keys(key),
        project_dir=project_dir,
        output_schema_file=output_schema,
        folder=folder,
        model=claude_model,
        max_tokens=max_tokens,
    )
    try:
        report = init(request)
    except EnrichError as exc:
        _fail(exc, False)
        return
    for path in report.written:
        click.echo(f"wrote {path}")
    click.echo("next:")
    for command in report.next_commands:
        click.echo(f"  {command}")


@main.command("run", epilog=EXIT_CODES_HELP)
@project_options
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between passes while batches are in flight (and between retrieves of one batch).",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds (exit 1); what is in flight is landed by the "
    "next run or sync.",
)
@click.option(
    "--reconcile-grace",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="As for sync: seconds before an intent whose create answer was lost is abandoned.",
)
@click.option(
    "--lock-wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another sync of the same ledger to finish; after that, "
    "exit 5 having changed nothing.",
)
@click.option(
    "--max-usd",
    type=click.FloatRange(min=0),
    default=None,
    help="Submit at most this many (estimated) dollars per pass; a pass held back ends "
    "submission for the run (exit 4).",
)
@click.option(
    "--approve-usd",
    type=click.FloatRange(min=0),
    default=None,
    help="Approve up to this many dollars per pass, in place of the budgets.",
)
def run_command(
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    select: tuple[str, ...],
    as_json: bool,
    verbose: int,
    poll_interval: float,
    max_wait: float | None,
    reconcile_grace: float,
    lock_wait: float,
    max_usd: float | None,
    approve_usd: float | None,
) -> None:
    """Build, sync and build until everything flagged is enriched.

    dbt build of what the flagged views need (+NAME__flagged +NAME__enriched), then
    `enrich sync` passes, each landing (then dbt build --select source:enrich_ledger+
    package:batch_enrich) and submitting, until a pass lands and submits nothing and
    nothing is in flight, or --max-wait. After a budget stop or an error, nothing more
    is submitted: the run lands what is in flight and exits 4 or 1.
    """
    from connector import render
    from connector.run import run as run_loop

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        select=select,
        poll_interval=poll_interval,
        max_wait_seconds=max_wait,
        reconcile_grace_seconds=reconcile_grace,
        lock_wait_seconds=lock_wait,
        max_usd=max_usd,
        approve_usd=approve_usd,
    )
    console = Console(stderr=True)

    def progress(message: str) -> None:
        # names of enrichments and batches: literal text, never rich markup
        console.log(render.plain(message))

    try:
        report = run_loop(settings, progress)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json(report))
    else:
        state = "done" if report.done else "stopped"
        click.echo(
            f"enrich run {state}: {report.passes} sync passes, {report.submitted} rows "
            f"submitted in {len(report.batches)} batches, {report.landed_lines} result "
            f"lines landed from {report.landed_batches} batches, {report.rejected} rows "
            f"rejected, {report.in_flight} requests in flight"
        )
    for error in report.errors:
        click.echo(f"error: {error}", err=True)
    for stop in report.budget_stops:
        click.echo(f"budget: {stop.message}", err=True)
    if report.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_BUDGET if report.budget_stops else EXIT_OK)


@main.command("pilot", epilog=EXIT_CODES_HELP)
@click.argument("name")
@(lambda func: _project_options(func, select=False))
@click.option(
    "--sample",
    "sample_size",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Rows in the pilot's sample (the same rows every time; a second run tops it up).",
)
@poll_options
@click.option(
    "--report",
    is_flag=True,
    help="Submit nothing: print the pilot's comparison with what is live (from the "
    "enrich_pilot_summary model: run `dbt build` after the pilot landed).",
)
def pilot_command(
    name: str,
    project_dir: Path,
    profiles_dir: Path | None,
    target: str | None,
    as_json: bool,
    verbose: int,
    sample_size: int,
    wait: bool,
    poll_interval: float,
    max_wait: float | None,
    lock_wait: float,
    reconcile_grace: float,
    report: bool,
) -> None:
    """Try the declaration of enrichment NAME as it now stands on a sample of its rows.

    Sends a deterministic sample of NAME's input rows with the declaration as it stands
    in the project (its prompt_version must be one no sync has sent), as pilot requests:
    the enriched table keeps showing what is live. dbt's enrich_pilot_comparison and
    enrich_pilot_summary put the two side by side; --report prints them. Once a sync
    sends that prompt_version (the switch), piloted rows are not sent again.
    """
    from connector import render

    _setup_logging(verbose)
    settings = Settings(
        project_dir=project_dir,
        profiles_dir=profiles_dir,
        target=target,
        wait=wait,
        poll_interval=poll_interval,
        max_wait_seconds=max_wait,
        lock_wait_seconds=lock_wait,
        reconcile_grace_seconds=reconcile_grace,
    )
    console = Console(stderr=as_json)
    try:
        if report:
            from connector.pilot_report import pilot_report

            summary = pilot_report(settings, name)
            if as_json:
                click.echo(render.to_json(summary))
            else:
                render.pilot_report_table(summary, console)
            sys.exit(EXIT_OK)
        from connector.pilot import pilot

        progress: Callable[[str], None] = (
            (lambda _: None) if as_json else (lambda message: console.log(render.plain(message)))
        )
        result = pilot(settings, name, sample_size, progress)
    except EnrichError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        click.echo(render.to_json(result))
    else:
        render.pilot_summary(result, console)
    sys.exit(EXIT_ERROR if result.sync.errors else EXIT_OK)


def _register_emulator() -> None:
    # The emulator is a separate server: the connector core never imports it, the CLI
    # only exposes it as a command.
    from connector.emulator.command import emulator_command

    main.add_command(emulator_command)


_register_emulator()
