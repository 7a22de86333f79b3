"""Finishing pending work: poll in-flight batches (politely) and land ended ones.

A batch's result lines and its `landed` status commit in one transaction; a cut
stream or a malformed line rolls everything back and the batch stays `ended`, to be
fetched again on the next sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connector.api import BatchApi, RemoteBatch
from connector.crashpoints import crash_point
from connector.errors import DuplicateResultLinesError, LedgerError, TransientApiError
from connector.ledger.base import BatchRecord, LandSummary, Ledger, PollUpdate
from connector.ledger.params import owned
from connector.policy import BatchStatus
from connector.reconcile import is_adopted
from connector.result_lines import CopyRows, MalformedLineError
from connector.settings import Settings

log = logging.getLogger(__name__)

RESULTS_RETENTION = timedelta(days=29)
ARCHIVE_WARNING = timedelta(days=3)


@dataclass
class LandReport:
    polled: int = 0
    in_flight: int = 0
    landed_batches: list[str] = field(default_factory=list)
    landed_lines: int = 0
    missing: int = 0
    problems: list[str] = field(default_factory=list)


def _update(remote: RemoteBatch) -> PollUpdate:
    return PollUpdate(
        processing_status=remote.processing_status,
        succeeded=remote.succeeded,
        errored=remote.errored,
        canceled=remote.canceled,
        expired=remote.expired,
        created_at=remote.created_at,
        expires_at=remote.expires_at,
        ended_at=remote.ended_at,
    )


def _due(batch: BatchRecord, now: datetime, interval: float) -> bool:
    if batch.last_polled_at is None:
        return True
    return (now - batch.last_polled_at).total_seconds() >= interval


def poll_and_land(
    ledger: Ledger,
    api: BatchApi,
    settings: Settings,
    on_progress: Callable[[str], None] = lambda _: None,
    *,
    force_poll: bool = False,
) -> LandReport:
    report = LandReport()
    now = ledger.now()
    for batch in ledger.batches([BatchStatus.SUBMITTED, BatchStatus.ENDED]):
        assert batch.batch_id is not None
        if batch.status is BatchStatus.SUBMITTED:
            if not force_poll and not _due(batch, now, settings.poll_interval):
                report.in_flight += 1
                continue
            try:
                remote = api.retrieve(batch.batch_id)
            except TransientApiError as exc:
                report.problems.append(f"{batch.enrichment} {batch.batch_id}: {exc}")
                report.in_flight += 1
                continue
            report.polled += 1
            ledger.record_poll(batch.submission_id, _update(remote))
            if remote.processing_status != "ended":
                report.in_flight += 1
                on_progress(
                    f"{batch.enrichment}: {batch.batch_id} {remote.processing_status} "
                    f"({remote.processing} processing)"
                )
                continue
            if remote.archived_at is not None:
                _lose(ledger, batch, "results archived before they were landed")
                continue
        _warn_archive(batch, now)
        try:
            if not _land(ledger, api, batch, report, on_progress):
                _lose_if_archived(ledger, api, batch, report)
        except LedgerError as exc:  # another sync moved it first: its work, not ours
            report.problems.append(f"{batch.enrichment} {batch.batch_id}: {exc}")
    return report


def _lose_if_archived(
    ledger: Ledger, api: BatchApi, batch: BatchRecord, report: LandReport
) -> None:
    """After a failed landing of an `ended` batch: if the API has archived its results
    (29 days after creation), no later sync can land them either, so the batch becomes
    `results_lost` and its rows retryable instead of staying in flight forever."""
    assert batch.batch_id is not None
    try:
        remote = api.retrieve(batch.batch_id)
    except TransientApiError:
        return
    ledger.record_poll(batch.submission_id, _update(remote))
    if remote.archived_at is not None:
        _lose(ledger, batch, "results archived before they were landed")
        report.in_flight -= 1
        report.problems.append(
            f"{batch.enrichment} {batch.batch_id}: results archived before they were landed; "
            "its rows will be retried"
        )


def _warn_archive(batch: BatchRecord, now: datetime) -> None:
    created = batch.api_created_at
    if created is None:
        return
    left = created + RESULTS_RETENTION - now
    if left < ARCHIVE_WARNING:
        log.error(
            "enrichment=%s batch_id=%s results will be archived in %s (29 days after creation) "
            "and are NOT landed yet: fix the landing error and run `enrich sync` now",
            batch.enrichment,
            batch.batch_id,
            left,
        )


def _lose(ledger: Ledger, batch: BatchRecord, why: str) -> None:
    ledger.transition(batch.submission_id, BatchStatus.ENDED, BatchStatus.RESULTS_LOST, note=why)
    log.error(
        "enrichment=%s batch_id=%s %s; its rows will be retried",
        batch.enrichment,
        batch.batch_id,
        why,
    )


def _land(
    ledger: Ledger,
    api: BatchApi,
    batch: BatchRecord,
    report: LandReport,
    on_progress: Callable[[str], None],
) -> bool:
    """Land one ended batch; False when its results could not be fetched or loaded."""
    assert batch.batch_id is not None
    adopted = is_adopted(batch.note)
    landed_at = datetime.now(UTC).isoformat()
    try:
        try:
            rows = CopyRows(batch_id=batch.batch_id, landed_at=landed_at)
            summary = _land_once(ledger, api, batch, rows, adopted)
        except DuplicateResultLinesError as exc:
            log.warning("enrichment=%s batch_id=%s %s", batch.enrichment, batch.batch_id, exc)
            rows = CopyRows(batch_id=batch.batch_id, landed_at=landed_at, fast=False)
            summary = _land_once(ledger, api, batch, rows, adopted)
    except (TransientApiError, MalformedLineError) as exc:
        report.problems.append(f"{batch.enrichment} {batch.batch_id}: {exc}")
        report.in_flight += 1
        log.warning(
            "enrichment=%s batch_id=%s landing rolled back: %s",
            batch.enrichment,
            batch.batch_id,
            exc,
        )
        return False
    if adopted and not owned(summary):
        ledger.transition(
            batch.submission_id,
            BatchStatus.ENDED,
            BatchStatus.ABANDONED,
            note=f"adopted batch {batch.batch_id} is not ours (no marker line of this intent, "
            f"{summary.foreign_lines} unknown custom_ids); nothing landed, rows released",
        )
        report.problems.append(f"{batch.enrichment} {batch.batch_id}: adopted batch not ours")
        return True
    report.landed_batches.append(batch.batch_id)
    report.landed_lines += summary.lines
    report.missing += summary.missing_requests
    for custom_id in rows.nul_fixed:
        log.warning(
            "enrichment=%s batch_id=%s custom_id=%s: \\u0000 in the output replaced by U+FFFD",
            batch.enrichment,
            batch.batch_id,
            custom_id,
        )
    for custom_id in rows.surrogate_fixed:
        log.warning(
            "enrichment=%s batch_id=%s custom_id=%s: a lone surrogate escape (\\ud800-\\udfff) "
            "in the output replaced by U+FFFD",
            batch.enrichment,
            batch.batch_id,
            custom_id,
        )
    if rows.duplicates:
        log.warning(
            "enrichment=%s batch_id=%s %d duplicate result lines ignored",
            batch.enrichment,
            batch.batch_id,
            len(rows.duplicates),
        )
    if summary.missing_requests:
        log.warning(
            "enrichment=%s batch_id=%s %d requests have no result line; they will be retried",
            batch.enrichment,
            batch.batch_id,
            summary.missing_requests,
        )
    if summary.foreign_lines:
        log.warning(
            "enrichment=%s batch_id=%s %d result lines match no request",
            batch.enrichment,
            batch.batch_id,
            summary.foreign_lines,
        )
    log.info(
        "enrichment=%s batch_id=%s landed %d lines", batch.enrichment, batch.batch_id, summary.lines
    )
    on_progress(f"{batch.enrichment}: landed {batch.batch_id} ({summary.lines} lines)")
    return True


def _land_once(
    ledger: Ledger, api: BatchApi, batch: BatchRecord, rows: CopyRows, adopted: bool
) -> LandSummary:
    assert batch.batch_id is not None
    with api.results(batch.batch_id) as chunks:
        # the raw stream and its framer: each warehouse loads it its own way
        return ledger.land(
            batch.submission_id,
            batch.batch_id,
            _crash_midway(chunks),
            rows,
            require_own=adopted,
            marker=batch.marker_custom_id,
        )


def _crash_midway(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk
        crash_point("mid_landing")  # a chunk is being loaded, nothing is committed
