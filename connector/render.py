"""Rendering command results: tables for people, one JSON document for machines.

Everything that comes from data (keys, reasons, enrichment and model names, batch ids,
error messages) reaches rich as `Text`, never as a markup string: a key like `[/red]`
or `[link=...]` is printed as written, never interpreted (no markup, no emoji codes,
no hyperlinks). Styles are applied to whole `Text` spans.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from connector.budgets import usd
from connector.commands import CancelReport
from connector.estimate import Estimate
from connector.ledger.base import StatusRow
from connector.pilot import PilotReport
from connector.pilot_report import PilotReportResult
from connector.sync import SyncReport


def _plain(value: Any) -> Any:
    # not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, which
    # counts the pairs instead of keeping the counts
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_") and not f.metadata.get("internal")
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(_plain(value), indent=2, sort_keys=True, default=str)


def plain(value: object, style: str = "") -> Text:
    """`value` as literal text for rich: markup, emoji codes and links are not parsed."""
    return Text(str(value), style=style)


def line(*parts: object, style: str = "") -> Text:
    """One printed line from literal parts (joined with no separator), in one style."""
    return Text("".join(str(p) for p in parts), style=style)


def sync_summary(report: SyncReport, console: Console) -> None:
    table = Table(title="enrich sync" + (" (dry run)" if report.dry_run else ""))
    for col in ("enrichment", "flagged", "submitted", "skipped", "rejected", "batches"):
        table.add_column(col, justify="left" if col == "enrichment" else "right")
    for s in report.submitted:
        table.add_row(
            plain(s.enrichment),
            str(s.flagged),
            str(s.submitted),
            str(sum(s.skipped.values())),
            str(len(s.rejected)),
            plain(", ".join(s.batches) or "-"),
        )
    console.print(table)
    landed = sum(len(r.landed_batches) for r in report.landing)
    lines = sum(r.landed_lines for r in report.landing)
    console.print(
        line(
            f"landed {landed} batches ({lines} result lines); {report.in_flight} requests in flight"
        )
    )
    for s in report.submitted:
        for why, n in s.skipped.most_common():
            console.print(line("  ", s.enrichment, f": skipped {n}: ", why))
        for key, why in s.rejected[:10]:
            console.print(
                line("  ", s.enrichment, ": rejected row ", key, ": ", why, style="yellow")
            )
        if len(s.rejected) > 10:
            console.print(
                line(
                    "  ",
                    s.enrichment,
                    f": ... {len(s.rejected) - 10} more rejected rows ",
                    "(see the ledger's rejections table)",
                )
            )
    for r in report.landing:
        for p in r.problems:
            console.print(line("  ", p, style="yellow"))
    for s in report.submitted:
        if s.shared:
            console.print(
                line("  ", s.enrichment, f": {s.shared} rows share an identical request (dedupe)")
            )
    if report.estimates:
        estimate_table(report.estimates, console)
    for e in report.errors:
        console.print(Text.assemble(("error:", "red"), " ", plain(e)))


def _cell(value: object) -> Text:
    if isinstance(value, float):
        return plain(usd(value))
    return plain("-" if value is None else value)


SPEND_COLUMNS = (
    "spend_today_usd",
    "spend_total_usd",
    "in_flight_estimated_usd",
    "requests_saved",
)


# the backlog's own table (`enrich status: backlog`)
BACKLOG_COLUMNS = (
    "flagged_rows",
    "flagged_by_reason",
    "oldest_flagged_age_hours",
    "in_flight_rows",
    "oldest_in_flight_age_hours",
    "backlog_computed_at",
)


def _hours(value: float | None) -> Text:
    return plain("-" if value is None else f"{value:,.1f} h")


def _reasons(counts: Mapping[str, int]) -> Text:
    return plain(", ".join(f"{reason} {n}" for reason, n in counts.items()) or "-")


def backlog_table(rows: list[StatusRow], console: Console) -> None:
    """Per enrichment: flagged rows (as of the last dbt build) by reason and the oldest
    one's age, rows in flight and the oldest batch's age."""
    table = Table(title="enrich status: backlog (flagged as of the last dbt build)")
    for title in ("enrichment", "flagged", "by reason", "oldest flagged", "in flight rows",
                  "oldest in flight"):  # fmt: skip
        table.add_column(title, justify="left" if title in ("enrichment", "by reason") else "right")
    for r in rows:
        table.add_row(
            plain(r.enrichment),
            plain("not built" if r.flagged_rows is None else r.flagged_rows),
            _reasons(r.flagged_by_reason),
            _hours(r.oldest_flagged_age_hours),
            plain(r.in_flight_rows),
            _hours(r.oldest_in_flight_age_hours),
        )
    console.print(table)


def status_table(rows: list[StatusRow], console: Console) -> None:
    """Three tables: where the requests are, what they cost, and the backlog."""
    names = [f.name for f in dataclasses.fields(StatusRow) if f.name != "attention"]
    progress = [n for n in names if n not in SPEND_COLUMNS and n not in BACKLOG_COLUMNS]
    for title, columns in (
        ("enrich status", progress),
        ("enrich status: spend (batch prices)", ["enrichment", *SPEND_COLUMNS]),
    ):
        table = Table(title=title)
        for n in columns:
            table.add_column(
                n.replace("_", " ").replace(" usd", ""),
                justify="left" if n == "enrichment" else "right",
                no_wrap=n == "enrichment",
            )
        for r in rows:
            table.add_row(*(_cell(getattr(r, n)) for n in columns))
        console.print(table)
    backlog_table(rows, console)
    for r in rows:
        for text in r.attention:
            console.print(line(r.enrichment, ": ", text, style="yellow"))


def estimate_table(estimates: list[Estimate], console: Console) -> None:
    table = Table(title="enrich estimate (batch prices)")
    for col in (
        "enrichment",
        "model",
        "requests",
        "input tokens",
        "output tokens",
        "worst output",
        "expected",
        "worst case",
    ):
        table.add_column(col, justify="left" if col in ("enrichment", "model") else "right")
    for e in estimates:
        table.add_row(
            plain(e.enrichment),
            plain(e.model),
            str(e.requests),
            f"{e.input_tokens:,.0f}",
            f"{e.output_tokens_expected:,.0f}",
            f"{e.output_tokens_worst:,.0f}",
            "no price" if e.usd_expected is None else usd(e.usd_expected),
            "no price" if e.usd_worst is None else usd(e.usd_worst),
        )
    console.print(table)
    for e in estimates:
        console.print(line("  ", e.enrichment, ": input tokens from ", e.input_method))
        console.print(line("  ", e.enrichment, ": output tokens from ", e.output_method))
        if e.shared:
            console.print(
                line("  ", e.enrichment, f": {e.shared} rows ride on an identical request")
            )
        if e.advice:
            console.print(line("  ", e.enrichment, ": ", e.advice, style="yellow"))
        if e.usd_expected is None:
            console.print(
                line(
                    "  ",
                    e.enrichment,
                    ": no price for ",
                    e.model,
                    " in the seed batch_enrich_model_prices",
                    style="yellow",
                )
            )


def pilot_summary(report: PilotReport, console: Console) -> None:
    sub = report.submit
    sent = 0 if sub is None else sub.submitted
    console.print(
        line(
            f"enrich pilot {report.enrichment} (prompt_version {report.prompt_version}, "
            f"{report.model}): sample of {report.sampled} of {report.input_rows} rows; "
            f"{sent} sent",
            "" if sub is None or not sub.batches else f" in {', '.join(sub.batches)}",
            "" if sub is None else f", estimated {usd(sub.estimated_usd)}",
        )
    )
    if report.strata:
        shares = ", ".join(f"{k}: {v}" for k, v in sorted(report.strata.items()))
        console.print(line("  stratified by ", report.stratify_by, ": ", shares))
    if report.not_flagged:
        console.print(
            line(
                f"  {report.not_flagged} sample rows are not flagged: piloted already (in "
                "flight or landed), or the flagged view predates the declaration (run "
                "`dbt build`)"
            )
        )
    if sub is not None:
        for why, n in sub.skipped.most_common():
            console.print(line("  skipped ", str(n), ": ", why))
        for key, why in sub.rejected[:10]:
            console.print(line("  rejected row ", key, ": ", why, style="yellow"))
    if report.unkeyed:
        console.print(line(f"  {report.unkeyed} input rows have a null key and are never sampled"))
    landed = sum(len(r.landed_batches) for r in report.sync.landing)
    console.print(line(f"landed {landed} batches; {report.sync.in_flight} requests in flight"))
    if report.sync.in_flight == 0 and sent:
        console.print(
            line(
                "next: `dbt build`, then `enrich pilot ",
                report.enrichment,
                " --report` (or query enrich_pilot_comparison)",
            )
        )
    for e in report.sync.errors:
        console.print(Text.assemble(("error:", "red"), " ", plain(e)))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def pilot_report_table(result: PilotReportResult, console: Console) -> None:
    if not result.pilots:
        console.print(
            line(
                f"no pilot of {result.enrichment} in enrich_pilot_summary: run `enrich pilot ",
                result.enrichment,
                "`, let it land (--wait), then `dbt build`",
            )
        )
    for p in result.pilots:
        state = "switched" if p.is_switched else "not switched"
        current = ", the declaration in the project" if p.is_current else ""
        console.print(
            line(
                f"pilot of {result.enrichment}: prompt_version {p.prompt_version}, {p.model} "
                f"({state}{current})"
            )
        )
        console.print(
            line(
                f"  {p.sampled_rows} rows sampled, {p.landed_rows} landed, {p.in_flight_rows} "
                f"in flight; valid {p.valid_rows} ({_rate(p.validity_rate)})"
            )
        )
        failed = ", ".join(f"{k} {v}" for k, v in p.failures.items() if v) or "none"
        console.print(line("  failures: ", failed))
        tokens_in = "-" if p.mean_input_tokens is None else f"{p.mean_input_tokens:,.0f}"
        tokens_out = "-" if p.mean_output_tokens is None else f"{p.mean_output_tokens:,.0f}"
        per_row = "-" if p.usd_per_row is None else usd(p.usd_per_row)
        console.print(
            line(f"  per row: {tokens_in} input tokens, {tokens_out} output tokens, {per_row}")
        )
        if p.rows_to_switch is not None:
            projected = "-" if p.projected_switch_usd is None else usd(p.projected_switch_usd)
            console.print(
                line(f"  switching sends {p.rows_to_switch} more rows: {projected} projected")
            )
        table = Table(title=f"agreement with what is live ({p.prompt_version})")
        for col in ("field", "compared", "matching", "agreement"):
            table.add_column(col, justify="left" if col == "field" else "right")
        for f in p.fields:
            table.add_row(
                plain(f.field), str(f.compared_rows), str(f.matching_rows), _rate(f.agreement_rate)
            )
        console.print(table)
    if result.estimate is not None:
        estimate_table([result.estimate], console)


def cancel_summary(report: CancelReport, console: Console) -> None:
    for b in report.canceled:
        console.print(line("cancel requested: ", b))
    if not report.canceled:
        console.print("nothing to cancel")
