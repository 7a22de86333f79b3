"""The values the shared queries take and the records their rows become, built once
for every ledger implementation (`connector.ledger.queries` holds the texts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.errors import LedgerError
from connector.ledger.base import BatchRecord, LandSummary, PollUpdate, RequestRecord
from connector.policy import (
    ATTEMPTED,
    IN_FLIGHT,
    TERMINAL_ERROR_TYPES,
    BatchStatus,
    RowHistory,
    is_allowed,
)

Params = dict[str, Any]


def history_params(enrichment: str, pairs: Sequence[tuple[str, str]]) -> Params:
    return {
        "ids": [p[0] for p in pairs],
        "hashes": [p[1] for p in pairs],
        "enrichment": enrichment,
        "attempted": [s.value for s in ATTEMPTED],
        "in_flight": [s.value for s in IN_FLIGHT],
        "terminal": sorted(TERMINAL_ERROR_TYPES),
    }


def history_row(row: Sequence[Any]) -> tuple[str, RowHistory]:
    custom_id, attempts, in_flight, succeeded, terminal = row
    return str(custom_id), RowHistory(
        attempts=int(attempts),
        in_flight=bool(in_flight),
        succeeded=bool(succeeded),
        terminal=bool(terminal),
    )


def intent_params(
    submission_id: str, enrichment: str, body_bytes: int, count: int, marker: str | None = None
) -> Params:
    return {
        "sid": submission_id,
        "enrichment": enrichment,
        "status": BatchStatus.SUBMITTING.value,
        "request_count": count,
        "body_bytes": body_bytes,
        "marker": marker,
    }


def request_row(submission_id: str, enrichment: str, r: RequestRecord) -> tuple[Any, ...]:
    """One request as a row in the order of `queries.REQUEST_COLUMNS`."""
    return (
        submission_id,
        r.custom_id,
        enrichment,
        r.primary_key_json,
        r.request_hash,
        r.input_hash,
        r.attempt,
        r.flag_reason,
        r.model,
        r.prompt_version,
        r.max_tokens,
        r.params_bytes,
        r.estimated_usd,
    )


def request_columns(
    submission_id: str, enrichment: str, requests: Sequence[RequestRecord]
) -> Params:
    """The requests as one list per column, for `queries.INSERT_REQUESTS`."""
    return {
        "sid": submission_id,
        "enrichment": enrichment,
        "custom_id": [r.custom_id for r in requests],
        "primary_key": [r.primary_key_json for r in requests],
        "request_hash": [r.request_hash for r in requests],
        "input_hash": [r.input_hash for r in requests],
        "attempt": [r.attempt for r in requests],
        "flag_reason": [r.flag_reason for r in requests],
        "model": [r.model for r in requests],
        "prompt_version": [r.prompt_version for r in requests],
        "max_tokens": [r.max_tokens for r in requests],
        "params_bytes": [r.params_bytes for r in requests],
        "estimated_usd": [r.estimated_usd for r in requests],
    }


def shared_key_params(submission_id: str, requests: Sequence[RequestRecord]) -> Params | None:
    """The dedupe members of an intent's requests, for `queries.INSERT_SHARED_KEYS`."""
    rows = [(r.custom_id, member, key) for r in requests for member, key in r.shared or ()]
    if not rows:
        return None
    return {
        "sid": submission_id,
        "custom_id": [r[0] for r in rows],
        "member": [r[1] for r in rows],
        "primary_key": [r[2] for r in rows],
    }


def sent_ids_params(enrichment: str, requests: Sequence[RequestRecord]) -> Params:
    """Every custom_id an intent serves (its requests and their dedupe members)."""
    ids = [r.custom_id for r in requests] + [m for r in requests for m, _ in r.shared or ()]
    return {"enrichment": enrichment, "ids": ids}


def transition_params(
    submission_id: str,
    old: BatchStatus,
    new: BatchStatus,
    *,
    batch_id: str | None,
    note: str | None,
) -> Params:
    """Parameters of `queries.TRANSITION`; refuses a transition the policy forbids."""
    if not is_allowed(old, new):
        raise LedgerError(f"illegal batch transition {old} -> {new} ({submission_id})")
    return {
        "new": new.value,
        "old": old.value,
        "sid": submission_id,
        "batch_id": batch_id,
        "submitted": new is BatchStatus.SUBMITTED,
        "note": note,
    }


def poll_params(submission_id: str, update: PollUpdate) -> Params:
    return {
        "ps": update.processing_status,
        "s": update.succeeded,
        "e": update.errored,
        "c": update.canceled,
        "x": update.expired,
        "created": update.created_at,
        "expires": update.expires_at,
        "ended_at": update.ended_at,
        "ended": update.processing_status == "ended",
        "submitted": BatchStatus.SUBMITTED.value,
        "ended_status": BatchStatus.ENDED.value,
        "sid": submission_id,
    }


def landed_coverage(lines: int, requests: int, matched: int) -> LandSummary:
    """From `queries.COVERAGE`: lines that match no request, requests with no line."""
    return LandSummary(lines, lines - matched, requests - matched)


def rejection_params(enrichment: str, rows: Sequence[tuple[str | None, str]]) -> Params:
    return {
        "enrichment": enrichment,
        "keys": [key for key, _ in rows],
        "reasons": [reason for _, reason in rows],
    }


def batch_record(row: Sequence[Any]) -> BatchRecord:
    return BatchRecord(
        submission_id=row[0],
        batch_id=row[1],
        enrichment=row[2],
        status=BatchStatus(row[3]),
        request_count=int(row[4]),
        intent_at=row[5],
        api_created_at=row[6],
        last_polled_at=row[7],
        note=row[8],
        marker_custom_id=row[9],
        create_started_at=row[10],
        reconcile_seen_at=row[11],
    )


def status_params() -> Params:
    return {
        "in_flight": [s.value for s in IN_FLIGHT],
        "landed": BatchStatus.LANDED.value,
        "terminal": sorted(TERMINAL_ERROR_TYPES),
    }


def owned(summary: LandSummary) -> bool:
    """Whether landed lines prove the batch is this intent's: its marker line when the
    batch has one, else every line's custom_id being one of its requests (which a dev
    and a prod copy of one project share: only the marker tells those apart)."""
    if summary.marker_found is not None:
        return summary.marker_found
    return summary.foreign_lines == 0
