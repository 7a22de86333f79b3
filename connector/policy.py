"""Pure rules: the batch state machine, result classification and the submit guard.

This module is the one place where the allowed batch status transitions are written
down; the ledger enforces them on every update.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BatchStatus(StrEnum):
    SUBMITTING = "submitting"  # intent committed; the create call's outcome is not known yet
    SUBMITTED = "submitted"  # the API's batch id is recorded
    ENDED = "ended"  # the API says processing ended; results not landed yet
    LANDED = "landed"  # every result line is in results_raw (same transaction)
    ABANDONED = "abandoned"  # no batch exists for this intent (or an adopted one was not ours)
    RESULTS_LOST = "results_lost"  # ended, but its results can no longer be downloaded


TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.SUBMITTING: frozenset({BatchStatus.SUBMITTED, BatchStatus.ABANDONED}),
    BatchStatus.SUBMITTED: frozenset({BatchStatus.ENDED}),
    BatchStatus.ENDED: frozenset(
        {BatchStatus.LANDED, BatchStatus.RESULTS_LOST, BatchStatus.ABANDONED}
    ),
    BatchStatus.LANDED: frozenset(),
    BatchStatus.ABANDONED: frozenset(),
    BatchStatus.RESULTS_LOST: frozenset(),
}

IN_FLIGHT: frozenset[BatchStatus] = frozenset(
    {BatchStatus.SUBMITTING, BatchStatus.SUBMITTED, BatchStatus.ENDED}
)

# Statuses whose requests were sent to the API (and so cost an attempt).
ATTEMPTED: frozenset[BatchStatus] = frozenset(set(BatchStatus) - {BatchStatus.ABANDONED})


def is_allowed(old: BatchStatus, new: BatchStatus) -> bool:
    return new in TRANSITIONS[old]


# errored results whose error type means "the request itself is wrong": retrying the
# same request cannot help, so it is terminal until the request changes.
TERMINAL_ERROR_TYPES: frozenset[str] = frozenset({"invalid_request_error"})


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYABLE = "retryable"
    TERMINAL = "terminal"


def classify_result(result_type: str, error_type: str | None) -> Outcome:
    """Classify one result line by its type and, for `errored`, its nested error type."""
    if result_type == "succeeded":
        return Outcome.SUCCEEDED
    if result_type == "errored" and error_type in TERMINAL_ERROR_TYPES:
        return Outcome.TERMINAL
    # errored api_error/overloaded_error/unknown, expired, canceled
    return Outcome.RETRYABLE


@dataclass(frozen=True)
class RowHistory:
    """What the ledger knows of one row (custom_id) for the request hash about to be sent."""

    attempts: int = 0  # requests sent with this hash
    in_flight: bool = False  # any request for this custom_id (any hash) still in flight
    succeeded: bool = False  # a succeeded result exists for this hash
    terminal: bool = False  # an invalid_request_error result exists for this hash


def skip_reason(history: RowHistory, flag_reason: str, max_attempts: int) -> str | None:
    """Why a flagged row must not be sent now, or None to send it.

    The flagged view already applies these rules; the connector applies them again
    against its own ledger, because sending twice costs money and a view can be stale
    or hand-written.
    """
    if history.in_flight:
        return "in flight: a request for this row is already submitted"
    if history.terminal:
        return "invalid_request_error for this exact request: change the request to retry"
    if history.succeeded and flag_reason != "repair":
        return "already succeeded for this exact request"
    if history.attempts >= max_attempts:
        return f"max_attempts reached ({history.attempts} of {max_attempts})"
    return None
