"""Resolving intents whose create outcome is unknown, without double-submitting and
without adopting a batch that is not theirs.

Runs only under the sync guard, so no other sync of this ledger is creating a batch
meanwhile. An intent left `submitting` (a crash, a timeout, a 5xx, a lost answer):

- with no create call ever started (`create_started_at` null): no batch can exist, so
  it is abandoned at once and its rows are released;
- otherwise its **candidates** are the API's batches that no ledger row holds, with
  its request count (rows + the marker), created from its first create call (less the
  clock-skew allowance) up to the end of its grace. A candidate is this intent's only
  when its results hold the intent's **marker** line (connector/marker.py); an
  in-progress candidate is waited for, never adopted on its size or its time. A dev and
  a prod copy of one project on one API account, or two equal batches of one ledger,
  are told apart by the marker alone.
- with no candidate left to check, the intent is abandoned once the grace has passed
  since a guarded sync first found it unresolved (its creator was gone by then, so a
  create still landing on the API's side has had that long to appear).

Batches whose marker names an intent that was already abandoned are recorded in
`orphan_batches` (billed, not landed) and shown by `enrich status`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from connector.api import BatchApi, RemoteBatch
from connector.errors import LedgerError, TransientApiError
from connector.ledger.base import BatchRecord, Ledger
from connector.marker import markers_in
from connector.policy import BatchStatus
from connector.settings import Settings

log = logging.getLogger(__name__)

ADOPTED_NOTE = "adopted"
# abandoned intents whose create had started are watched this long for a late batch
ORPHAN_WATCH = timedelta(hours=25)


@dataclass
class ReconcileReport:
    unresolved: list[str] = field(default_factory=list)  # submission ids still submitting
    adopted: list[str] = field(default_factory=list)  # batch ids
    abandoned: list[str] = field(default_factory=list)  # submission ids
    orphans: list[str] = field(default_factory=list)  # batch ids found this run
    problems: list[str] = field(default_factory=list)


def _expected_total(intent: BatchRecord) -> int:
    return intent.request_count + (1 if intent.marker_custom_id else 0)


class _Verifier:
    """Reads each ended candidate's markers once per run (retrieving in-progress ones
    once, which is the poll that lets them end)."""

    def __init__(self, api: BatchApi) -> None:
        self.api = api
        self.markers: dict[str, set[str]] = {}
        self.pending: set[str] = set()  # candidates still in progress

    def check(self, batch: RemoteBatch) -> set[str] | None:
        """The markers in a candidate's results, or None while it is in progress."""
        if batch.id in self.markers:
            return self.markers[batch.id]
        if batch.id in self.pending:
            return None
        current = batch
        if current.processing_status != "ended":
            current = self.api.retrieve(batch.id)
            if current.processing_status != "ended":
                self.pending.add(batch.id)
                return None
        if current.archived_at is not None:
            self.markers[batch.id] = set()  # nothing can be read: it proves nothing
            return self.markers[batch.id]
        found: set[str] = set()
        tail = b""
        with self.api.results(batch.id) as chunks:
            for chunk in chunks:
                data = tail + chunk
                cut = data.rfind(b"\n") + 1
                found |= markers_in(data[:cut])
                tail = data[cut:]
        found |= markers_in(tail)
        self.markers[batch.id] = found
        return found


def _window(intent: BatchRecord, now: datetime, settings: Settings) -> tuple[datetime, datetime]:
    assert intent.create_started_at is not None
    skew = timedelta(seconds=settings.clock_skew_seconds)
    grace = timedelta(seconds=settings.reconcile_grace_seconds)
    seen = intent.reconcile_seen_at or now
    return intent.create_started_at - skew, max(seen, now) + grace + skew


def _candidates(
    intent: BatchRecord, remote: Iterable[RemoteBatch], now: datetime, settings: Settings
) -> list[RemoteBatch]:
    start, end = _window(intent, now, settings)
    total = _expected_total(intent)
    return sorted(
        (b for b in remote if b.total == total and start <= b.created_at <= end),
        key=lambda b: (b.created_at, b.id),
    )


def reconcile_submitting(ledger: Ledger, api: BatchApi, settings: Settings) -> list[str]:
    """Adopt or abandon every `submitting` intent; returns the ids still unresolved."""
    return reconcile(ledger, api, settings).unresolved


def reconcile(ledger: Ledger, api: BatchApi, settings: Settings) -> ReconcileReport:
    report = ReconcileReport()
    pending = ledger.batches([BatchStatus.SUBMITTING])
    now = ledger.now()
    started: list[BatchRecord] = []
    for intent in pending:
        if intent.create_started_at is None:
            _abandon(ledger, intent, "no create call was started for this intent", report)
        else:
            started.append(intent)
    watched = [
        b
        for b in ledger.batches([BatchStatus.ABANDONED])
        if b.create_started_at is not None
        and b.marker_custom_id is not None
        and now - (b.reconcile_seen_at or b.create_started_at) < ORPHAN_WATCH
    ]
    if not started and not watched:
        return report
    skew = timedelta(seconds=settings.clock_skew_seconds)
    since = min(b.create_started_at for b in [*started, *watched] if b.create_started_at) - skew
    try:
        remote = list(api.recent(since))
    except TransientApiError as exc:
        report.problems.append(f"reconcile: {exc}")
        report.unresolved = [i.submission_id for i in started]
        return report
    claimed = ledger.known_batch_ids([b.id for b in remote])
    unclaimed = [b for b in remote if b.id not in claimed]
    verifier = _Verifier(api)
    by_marker = {b.marker_custom_id: b for b in [*started, *watched] if b.marker_custom_id}
    owner: dict[str, RemoteBatch] = {}  # marker -> its batch
    waiting: dict[str, list[str]] = {}  # submission id -> candidates still in progress
    candidates: dict[str, list[RemoteBatch]] = {}
    for intent in [*started, *watched]:
        candidates[intent.submission_id] = _candidates(intent, unclaimed, now, settings)
        for batch in candidates[intent.submission_id]:
            if batch.id in {b.id for b in owner.values()}:
                continue
            try:
                markers = verifier.check(batch)
            except TransientApiError as exc:
                report.problems.append(f"reconcile: {exc}")
                markers = None
            if markers is None:
                waiting.setdefault(intent.submission_id, []).append(batch.id)
                continue
            for marker in markers & by_marker.keys():
                owner.setdefault(marker, batch)
    for intent in started:
        has_candidates = bool(candidates[intent.submission_id])
        _resolve(ledger, intent, owner, waiting, has_candidates, now, settings, report)
    for intent in watched:
        late = owner.get(intent.marker_custom_id or "")
        if late is not None:
            _orphan(ledger, intent, late, report)
    return report


def _resolve(
    ledger: Ledger,
    intent: BatchRecord,
    owner: dict[str, RemoteBatch],
    waiting: dict[str, list[str]],
    has_candidates: bool,
    now: datetime,
    settings: Settings,
    report: ReconcileReport,
) -> None:
    mine = owner.get(intent.marker_custom_id or "")
    if mine is not None:
        try:
            ledger.transition(
                intent.submission_id,
                BatchStatus.SUBMITTING,
                BatchStatus.SUBMITTED,
                batch_id=mine.id,
                note=f"{ADOPTED_NOTE}: the create call's answer was lost; the batch's "
                "marker line proves it is this intent's",
            )
        except LedgerError as exc:
            report.problems.append(f"{intent.enrichment} {mine.id}: {exc}")
            return
        report.adopted.append(mine.id)
        log.warning(
            "enrichment=%s batch_id=%s adopted for submission %s (its marker proves it)",
            intent.enrichment,
            mine.id,
            intent.submission_id,
        )
        return
    in_progress = waiting.get(intent.submission_id, [])
    if in_progress:
        note = (
            f"create outcome unknown: waiting for batch(es) {', '.join(in_progress)} to end "
            "to check whether one carries this intent's marker"
        )
        ledger.mark_reconcile_seen(intent.submission_id, note)
        report.unresolved.append(intent.submission_id)
        return
    if intent.marker_custom_id is None and has_candidates:
        note = "sent before ledger v3 (no marker): its batch cannot be told from another"
        ledger.mark_reconcile_seen(intent.submission_id, note)
        report.unresolved.append(intent.submission_id)
        return
    seen = intent.reconcile_seen_at or now
    waited = (now - seen).total_seconds()
    if waited >= settings.reconcile_grace_seconds:
        _abandon(
            ledger,
            intent,
            f"no batch with its marker on the API {waited:.0f}s after a sync found it unresolved",
            report,
        )
        return
    ledger.mark_reconcile_seen(
        intent.submission_id,
        "create outcome unknown: no batch with its marker on the API yet; abandoned after "
        f"{settings.reconcile_grace_seconds:.0f}s",
    )
    report.unresolved.append(intent.submission_id)


def _abandon(ledger: Ledger, intent: BatchRecord, why: str, report: ReconcileReport) -> None:
    try:
        ledger.transition(
            intent.submission_id,
            BatchStatus.SUBMITTING,
            BatchStatus.ABANDONED,
            note=f"{why}; rows released",
        )
    except LedgerError as exc:
        report.problems.append(f"{intent.enrichment} {intent.submission_id}: {exc}")
        return
    report.abandoned.append(intent.submission_id)
    log.warning(
        "enrichment=%s submission %s abandoned: %s", intent.enrichment, intent.submission_id, why
    )


def _orphan(
    ledger: Ledger, intent: BatchRecord, batch: RemoteBatch, report: ReconcileReport
) -> None:
    note = (
        f"created for submission {intent.submission_id} after it was abandoned (its marker "
        "proves it); billed, not landed: its rows were sent again"
    )
    ledger.record_orphan(
        batch.id, intent.submission_id, intent.enrichment, intent.request_count, note
    )
    report.orphans.append(batch.id)
    log.error("enrichment=%s batch_id=%s orphan: %s", intent.enrichment, batch.id, note)


def is_adopted(note: str | None) -> bool:
    return bool(note) and ADOPTED_NOTE in (note or "")
