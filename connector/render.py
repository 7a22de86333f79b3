"""Rendering command results: tables for people, one JSON document for machines."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from connector.budgets import usd
from connector.commands import CancelReport
from connector.estimate import Estimate
from connector.ledger.base import StatusRow
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


def sync_summary(report: SyncReport, console: Console) -> None:
    table = Table(title="enrich sync" + (" (dry run)" if report.dry_run else ""))
    for col in ("enrichment", "flagged", "submitted", "skipped", "rejected", "batches"):
        table.add_column(col, justify="left" if col == "enrichment" else "right")
    for s in report.submitted:
        table.add_row(
            s.enrichment,
            str(s.flagged),
            str(s.submitted),
            str(sum(s.skipped.values())),
            str(len(s.rejected)),
            ", ".join(s.batches) or "-",
        )
    console.print(table)
    landed = sum(len(r.landed_batches) for r in report.landing)
    lines = sum(r.landed_lines for r in report.landing)
    console.print(
        f"landed {landed} batches ({lines} result lines); {report.in_flight} requests in flight"
    )
    for s in report.submitted:
        for why, n in s.skipped.most_common():
            console.print(f"  {s.enrichment}: skipped {n}: {why}")
        for key, why in s.rejected[:10]:
            console.print(f"  [yellow]{s.enrichment}: rejected row {key}: {why}[/yellow]")
        if len(s.rejected) > 10:
            console.print(
                f"  {s.enrichment}: ... {len(s.rejected) - 10} more rejected rows "
                "(see the ledger's rejections table)"
            )
    for r in report.landing:
        for p in r.problems:
            console.print(f"  [yellow]{p}[/yellow]")
    for s in report.submitted:
        if s.shared:
            console.print(f"  {s.enrichment}: {s.shared} rows share an identical request (dedupe)")
    if report.estimates:
        estimate_table(report.estimates, console)
    for e in report.errors:
        console.print(f"[red]error:[/red] {e}")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return usd(value)
    return "-" if value is None else str(value)


SPEND_COLUMNS = (
    "spend_today_usd",
    "spend_total_usd",
    "in_flight_estimated_usd",
    "requests_saved",
)


def status_table(rows: list[StatusRow], console: Console) -> None:
    """Two tables: where the requests are, then what they cost."""
    names = [f.name for f in dataclasses.fields(StatusRow)]
    progress = [n for n in names if n not in SPEND_COLUMNS]
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
            e.enrichment,
            e.model,
            str(e.requests),
            f"{e.input_tokens:,.0f}",
            f"{e.output_tokens_expected:,.0f}",
            f"{e.output_tokens_worst:,.0f}",
            "no price" if e.usd_expected is None else usd(e.usd_expected),
            "no price" if e.usd_worst is None else usd(e.usd_worst),
        )
    console.print(table)
    for e in estimates:
        console.print(f"  {e.enrichment}: input tokens from {e.input_method}")
        console.print(f"  {e.enrichment}: output tokens from {e.output_method}")
        if e.shared:
            console.print(f"  {e.enrichment}: {e.shared} rows ride on an identical request")
        if e.usd_expected is None:
            console.print(
                f"  [yellow]{e.enrichment}: no price for {e.model} in the seed "
                "batch_enrich_model_prices[/yellow]"
            )


def cancel_summary(report: CancelReport, console: Console) -> None:
    for b in report.canceled:
        console.print(f"cancel requested: {b}")
    if not report.canceled:
        console.print("nothing to cancel")
