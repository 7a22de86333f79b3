"""Resolving intents whose create outcome is unknown, without double-submitting.

The API has no idempotency key. An intent left `submitting` (a crash, a timeout, a
5xx, a lost answer) is matched against the API's recent batches: one created after
the intent (less a clock-skew allowance), with the same request count, that no other
ledger row claims, is adopted. Adopted batches are confirmed by their custom_ids when
they land. With no candidate after a grace period, the intent is abandoned and its
rows become eligible again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from connector.api import BatchApi, RemoteBatch
from connector.ledger.base import Ledger
from connector.policy import BatchStatus
from connector.settings import Settings

log = logging.getLogger(__name__)

ADOPTED_NOTE = "adopted"


def reconcile_submitting(ledger: Ledger, api: BatchApi, settings: Settings) -> list[str]:
    """Adopt or abandon every `submitting` intent; returns the ids still unresolved."""
    pending = ledger.batches([BatchStatus.SUBMITTING])
    if not pending:
        return []
    skew = timedelta(seconds=settings.clock_skew_seconds)
    since = min(p.intent_at for p in pending) - skew
    remote = list(api.recent(since))
    claimed = ledger.known_batch_ids([b.id for b in remote])
    candidates: list[RemoteBatch] = sorted(
        (b for b in remote if b.id not in claimed), key=lambda b: (b.created_at, b.id)
    )
    now = ledger.now()
    unresolved: list[str] = []
    for intent in pending:
        match = next(
            (
                b
                for b in candidates
                if b.total == intent.request_count and b.created_at >= intent.intent_at - skew
            ),
            None,
        )
        if match is not None:
            candidates.remove(match)
            ledger.transition(
                intent.submission_id,
                BatchStatus.SUBMITTING,
                BatchStatus.SUBMITTED,
                batch_id=match.id,
                note=f"{ADOPTED_NOTE}: the create call's answer was lost; "
                "confirmed by custom_ids when it lands",
            )
            log.warning(
                "enrichment=%s batch_id=%s adopted for submission %s (create answer was lost)",
                intent.enrichment,
                match.id,
                intent.submission_id,
            )
            continue
        age = (now - intent.intent_at).total_seconds()
        if age >= settings.reconcile_grace_seconds:
            ledger.transition(
                intent.submission_id,
                BatchStatus.SUBMITTING,
                BatchStatus.ABANDONED,
                note=f"no batch found on the API {age:.0f}s after the intent; rows released",
            )
            log.warning(
                "enrichment=%s submission %s abandoned: no matching batch on the API",
                intent.enrichment,
                intent.submission_id,
            )
        else:
            unresolved.append(intent.submission_id)
    return unresolved


def is_adopted(note: str | None) -> bool:
    return bool(note) and ADOPTED_NOTE in (note or "")
