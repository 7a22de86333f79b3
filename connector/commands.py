"""`enrich status` and `enrich cancel`: small commands over the ledger and the API."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from connector.api import BatchApi
from connector.errors import ConfigError
from connector.ledger.base import StatusRow
from connector.policy import BatchStatus
from connector.settings import Settings
from connector.sync import opened

log = logging.getLogger(__name__)


def status(settings: Settings) -> list[StatusRow]:
    with opened(settings) as (project, ledger):
        rows = ledger.status()
        declared = {e.name for e in project.enrichments}
    known = {r.enrichment for r in rows}
    rows += [StatusRow(name, 0, 0, 0, 0, 0, 0, 0, 0) for name in sorted(declared - known)]
    if settings.select:
        rows = [r for r in rows if r.enrichment in settings.select]
    return sorted(rows, key=lambda r: r.enrichment)


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
