"""The batch state machine, result classification and the submit guard, as tables."""

from __future__ import annotations

import pytest

from connector.policy import (
    IN_FLIGHT,
    TRANSITIONS,
    BatchStatus,
    Outcome,
    RowHistory,
    classify_result,
    is_allowed,
    skip_reason,
)

S = BatchStatus


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (S.SUBMITTING, S.SUBMITTED, True),
        (S.SUBMITTING, S.ABANDONED, True),
        (S.SUBMITTING, S.LANDED, False),
        (S.SUBMITTED, S.ENDED, True),
        (S.SUBMITTED, S.LANDED, False),
        (S.SUBMITTED, S.ABANDONED, False),
        (S.ENDED, S.LANDED, True),
        (S.ENDED, S.RESULTS_LOST, True),
        (S.ENDED, S.ABANDONED, True),
        (S.LANDED, S.ENDED, False),
        (S.ABANDONED, S.SUBMITTED, False),
        (S.RESULTS_LOST, S.LANDED, False),
    ],
)
def test_transitions(old: BatchStatus, new: BatchStatus, allowed: bool) -> None:
    assert is_allowed(old, new) is allowed


def test_terminal_statuses_have_no_way_out_and_are_not_in_flight() -> None:
    for status in (S.LANDED, S.ABANDONED, S.RESULTS_LOST):
        assert TRANSITIONS[status] == frozenset()
        assert status not in IN_FLIGHT
    assert set(TRANSITIONS) == set(BatchStatus)


@pytest.mark.parametrize(
    ("result_type", "error_type", "outcome"),
    [
        ("succeeded", None, Outcome.SUCCEEDED),
        ("errored", "invalid_request_error", Outcome.TERMINAL),
        ("errored", "api_error", Outcome.RETRYABLE),
        ("errored", "overloaded_error", Outcome.RETRYABLE),
        ("errored", None, Outcome.RETRYABLE),
        ("expired", None, Outcome.RETRYABLE),
        ("canceled", None, Outcome.RETRYABLE),
    ],
)
def test_classify_result(result_type: str, error_type: str | None, outcome: Outcome) -> None:
    assert classify_result(result_type, error_type) is outcome


@pytest.mark.parametrize(
    ("history", "flag", "expected"),
    [
        (RowHistory(), "new", None),
        (RowHistory(in_flight=True), "new", "in flight"),
        (RowHistory(in_flight=True, attempts=1), "repair", "in flight"),
        (RowHistory(terminal=True, attempts=1), "retry", "invalid_request_error"),
        (RowHistory(succeeded=True, attempts=1), "new", "already succeeded"),
        (RowHistory(succeeded=True, attempts=1), "repair", None),
        (RowHistory(succeeded=True, attempts=3), "repair", "max_attempts reached (3 of 3)"),
        (RowHistory(attempts=2), "retry", None),
        (RowHistory(attempts=3), "retry", "max_attempts reached"),
    ],
)
def test_skip_reason(history: RowHistory, flag: str, expected: str | None) -> None:
    got = skip_reason(history, flag, max_attempts=3)
    if expected is None:
        assert got is None
    else:
        assert got is not None and expected in got
