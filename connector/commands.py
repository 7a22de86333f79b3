"""`enrich status`, `enrich estimate` and `enrich cancel`: small commands over the
ledger and the API."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from connector.api import BatchApi
from connector.errors import ConfigError
from connector.estimate import Estimate, estimate_enrichment, load_prices, utc_day_start
from connector.ledger.base import InFlightBacklog, Ledger, StatusRow
from connector.policy import BatchStatus
from connector.pricing import Price
from connector.project import Project
from connector.settings import Settings
from connector.sync import opened, optional_api

log = logging.getLogger(__name__)


def status(settings: Settings) -> list[StatusRow]:
    with opened(settings) as (project, ledger):
        rows = ledger.status()
        declared = {e.name for e in project.enrichments}
        spend = _spend(ledger, load_prices(project, ledger))
        in_flight = ledger.in_flight_estimates()
        saved = ledger.shared_counts()
        attention = _attention(ledger)
        flagged = _flagged_backlog(project, ledger)
        flying = ledger.in_flight_backlog()
        now = ledger.now()
    known = {r.enrichment for r in rows}
    rows += [StatusRow(name, 0, 0, 0, 0, 0, 0, 0, 0) for name in sorted(declared - known)]
    if settings.select:
        rows = [r for r in rows if r.enrichment in settings.select]
    rows = [
        dataclasses.replace(
            r,
            spend_today_usd=spend[r.enrichment][0],
            spend_total_usd=spend[r.enrichment][1],
            in_flight_estimated_usd=in_flight.get(r.enrichment, 0.0),
            requests_saved=saved.get(r.enrichment, 0),
            unresolved_intents=sum(1 for kind, _ in attention[r.enrichment] if kind == "intent"),
            orphan_batches=sum(1 for kind, _ in attention[r.enrichment] if kind == "orphan"),
            attention=tuple(text for _, text in attention[r.enrichment]),
        )
        for r in rows
    ]
    rows = [_with_backlog(r, flagged, flying, now) for r in rows]
    return sorted(rows, key=lambda r: r.enrichment)


# the columns of enrich_backlog that `enrich status` reads (models/marts/enrich_backlog.sql)
FLAG_REASONS = ("new", "input_changed", "prompt_changed", "model_changed", "retry", "repair")
BACKLOG_COLUMNS = (
    "enrichment",
    "rows_flagged",
    *(f"rows_flagged_{reason}" for reason in FLAG_REASONS),
    "oldest_flagged_at",
    "computed_at",
)


@dataclass(frozen=True)
class _Flagged:
    rows: int
    by_reason: dict[str, int]
    oldest_flagged_at: datetime | None
    computed_at: datetime | None


def _flagged_backlog(project: Project, ledger: Ledger) -> dict[str, _Flagged] | None:
    """Per enrichment, the flagged rows as the last dbt build counted them in the
    enrich_backlog table (a few rows); None when that table is not built (yet)."""
    relation = project.backlog
    if relation is None or not set(BACKLOG_COLUMNS) <= set(ledger.flagged_columns(relation)):
        return None
    found: dict[str, _Flagged] = {}
    for chunk in ledger.stream_flagged(relation, BACKLOG_COLUMNS, 1000):
        for row in chunk:
            counts = [_count(v) for v in row[2 : 2 + len(FLAG_REASONS)]]
            found[str(row[0])] = _Flagged(
                rows=_count(row[1]),
                by_reason={r: n for r, n in zip(FLAG_REASONS, counts, strict=True) if n},
                oldest_flagged_at=_aware(row[-2]),
                computed_at=_aware(row[-1]),
            )
    return found


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float | Decimal) else 0


def _aware(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _hours(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds() / 3600)


def _with_backlog(
    row: StatusRow,
    flagged: Mapping[str, _Flagged] | None,
    flying: Mapping[str, InFlightBacklog],
    now: datetime,
) -> StatusRow:
    air = flying.get(row.enrichment)
    row = dataclasses.replace(
        row,
        in_flight_rows=air.rows if air else 0,
        oldest_in_flight_age_hours=_hours(air.oldest_intent_at if air else None, now),
    )
    if flagged is None:
        return row
    mine = flagged.get(row.enrichment, _Flagged(0, {}, None, None))
    return dataclasses.replace(
        row,
        flagged_rows=mine.rows,
        flagged_by_reason=mine.by_reason,
        oldest_flagged_age_hours=_hours(mine.oldest_flagged_at, now),
        backlog_computed_at=mine.computed_at,
    )


def _attention(ledger: Ledger) -> defaultdict[str, list[tuple[str, str]]]:
    """Per enrichment, what an operator must know: intents whose create outcome is not
    known (and why), and orphan batches (created, billed, not landed)."""
    found: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for b in ledger.batches([BatchStatus.SUBMITTING]):
        why = b.note or (
            "create call in progress" if b.create_started_at else "intent recorded, not sent"
        )
        found[b.enrichment].append(("intent", f"submission {b.submission_id}: {why}"))
    for o in ledger.orphans():
        found[o.enrichment].append(("orphan", f"orphan batch {o.batch_id}: {o.note}"))
    return found


def _spend(ledger: Ledger, prices: dict[str, Price]) -> defaultdict[str, list[float | None]]:
    """(today, total) USD per enrichment from landed usage, as enrich_costs prices it;
    None where a model has no price."""
    totals: defaultdict[str, list[float | None]] = defaultdict(lambda: [0.0, 0.0])
    for u in ledger.usage(utc_day_start(ledger.now())):
        price = prices.get(u.model)
        amount = (
            None
            if price is None
            else price.cost(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cache_write_5m_tokens=u.cache_write_5m_tokens,
                cache_write_1h_tokens=u.cache_write_1h_tokens,
                cache_read_tokens=u.cache_read_tokens,
            )
        )
        pair = totals[u.enrichment]
        for i in (0, 1) if u.is_today else (1,):
            current = pair[i]
            pair[i] = None if current is None or amount is None else current + amount
    return totals


def estimate(settings: Settings) -> list[Estimate]:
    """What `sync` would submit now, per selected enrichment, in tokens and dollars."""
    with opened(settings) as (project, ledger):
        selected = project.select(settings.select)
        prices = load_prices(project, ledger)
        api = optional_api(settings)
        try:
            return [estimate_enrichment(ledger, api, e, settings, prices) for e in selected]
        finally:
            if api is not None:
                api.close()


@dataclass
class CancelReport:
    canceled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def cancel(settings: Settings, batch_id: str | None) -> CancelReport:
    """Ask the API to cancel in-flight batches (one by id, or every one of --select).

    The batches stay in the ledger as `submitted`; the next sync lands what finished
    and the canceled items come back as retryable.
    """
    if not batch_id and not settings.select:
        raise ConfigError("enrich cancel needs --batch ID or --select NAME")
    report = CancelReport()
    with opened(settings) as (_, ledger):
        in_flight = ledger.batches([BatchStatus.SUBMITTED])
        targets = [
            b
            for b in in_flight
            if (batch_id and b.batch_id == batch_id)
            or (not batch_id and b.enrichment in settings.select)
        ]
        if batch_id and not targets:
            raise ConfigError(f"batch {batch_id} is not in flight in the ledger")
        api = BatchApi(timeout=settings.api_timeout)
        try:
            for b in targets:
                assert b.batch_id is not None
                remote = api.cancel(b.batch_id)
                report.canceled.append(b.batch_id)
                log.info(
                    "enrichment=%s batch_id=%s cancel requested (%s)",
                    b.enrichment,
                    b.batch_id,
                    remote.processing_status,
                )
        finally:
            api.close()
    return report
