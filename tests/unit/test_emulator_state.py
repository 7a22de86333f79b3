"""The batch state machine, result order and list paging, without HTTP."""

from __future__ import annotations

import orjson
import pytest

from connector.emulator.outputs import canceled_line
from connector.emulator.state import (
    ARCHIVED_AFTER_SECONDS,
    EXPIRES_AFTER_SECONDS,
    Batch,
    Timing,
    advance,
    batch_object,
    cancel,
    ends_now,
    request_counts,
    result_lines,
    result_order,
    rfc3339,
)
from connector.emulator.store import BatchStore

T0 = 1_800_000_000.0


def make_batch(size: int = 10, batch_id: str = "msgbatch_test") -> Batch:
    custom_ids = [f"c{i}" for i in range(size)]
    batch = Batch(id=batch_id, created_at=T0, custom_ids=custom_ids)
    batch.lines = [
        orjson.dumps({"custom_id": c, "result": {"type": "succeeded"}}) for c in custom_ids
    ]
    batch.result_types = ["succeeded"] * size
    batch.result_types[0] = "errored"
    batch.ready.set()
    return batch


def test_default_timing_ends_on_the_second_retrieve() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=1)
    assert request_counts(batch) == {
        "processing": 10, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
    }  # fmt: skip
    assert not advance(batch, T0 + 1, timing, polled=False)
    assert advance(batch, T0 + 1, timing, polled=True) and batch.status == "in_progress"
    assert ends_now(batch, T0 + 2, timing, polled=True)
    assert advance(batch, T0 + 2, timing, polled=True) and batch.status == "ended"
    assert batch.ended_at == T0 + 2 and batch.end_reason == "completed"
    assert request_counts(batch) == {
        "processing": 0, "succeeded": 9, "errored": 1, "canceled": 0, "expired": 0,
    }  # fmt: skip


@pytest.mark.parametrize("polls", [0, 3])
def test_ended_after_polls_counts_retrieves_only(polls: int) -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=polls)
    for _ in range(polls):
        advance(batch, T0, timing, polled=False)
        advance(batch, T0, timing, polled=True)
        assert batch.status == "in_progress"
    advance(batch, T0, timing, polled=True)
    assert batch.status == "ended"


def test_processing_seconds_ends_by_time_whatever_the_polls() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=0, processing_seconds=60)
    for _ in range(5):
        advance(batch, T0 + 30, timing, polled=True)
    assert batch.status == "in_progress"
    advance(batch, T0 + 61, timing, polled=False)
    assert batch.status == "ended" and batch.ended_at == T0 + 60


def test_cancel_keeps_what_was_processed_and_ends_on_the_next_retrieve() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=3)
    advance(batch, T0, timing, polled=True)
    advance(batch, T0, timing, polled=True)  # half-way: it would end on the 4th
    cancel(batch, T0 + 5, timing)
    assert batch.status == "canceling" and batch.cancel_initiated_at == T0 + 5
    assert not advance(batch, T0 + 6, timing, polled=False)
    advance(batch, T0 + 7, timing, polled=True)
    assert batch.status == "ended" and batch.end_reason == "canceled"
    assert request_counts(batch)["canceled"] == 5
    lines = list(result_lines(batch, seed=0))
    assert sum(line == canceled_line(line_id(line)) for line in lines) == 5
    assert sorted(line_id(line) for line in lines) == sorted(batch.custom_ids)


def line_id(line: bytes) -> str:
    return str(orjson.loads(line)["custom_id"])


def test_a_batch_not_ended_after_24_hours_expires() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=1)
    advance(batch, T0 + EXPIRES_AFTER_SECONDS - 1, timing, polled=False)
    assert batch.status == "in_progress"
    advance(batch, T0 + EXPIRES_AFTER_SECONDS + 5, timing, polled=False)
    assert batch.status == "ended" and batch.end_reason == "expired"
    assert batch.ended_at == batch.expires_at
    assert request_counts(batch)["expired"] == 10


def test_the_batch_expire_fault_expires_every_item_when_the_batch_ends() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=0)
    batch.doomed = True
    advance(batch, T0, timing, polled=True)
    assert batch.status == "ended" and request_counts(batch)["expired"] == 10
    assert all(orjson.loads(line)["result"]["type"] == "expired" for line in result_lines(batch, 0))


def test_archived_at_appears_29_days_after_creation() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=0)
    advance(batch, T0, timing, polled=True)
    url = "http://x/results"
    assert batch_object(batch, T0 + ARCHIVED_AFTER_SECONDS - 1, url)["archived_at"] is None
    shown = batch_object(batch, T0 + ARCHIVED_AFTER_SECONDS, url)
    assert shown["archived_at"] == rfc3339(T0 + ARCHIVED_AFTER_SECONDS)


def test_results_url_only_once_ended_and_timestamps_are_rfc3339_utc() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=0)
    shown = batch_object(batch, T0, "http://x/results")
    assert shown["results_url"] is None and shown["ended_at"] is None
    assert shown["created_at"] == "2027-01-15T08:00:00.000000Z"
    assert shown["expires_at"] == "2027-01-16T08:00:00.000000Z"
    advance(batch, T0, timing, polled=True)
    assert batch_object(batch, T0, "http://x/results")["results_url"] == "http://x/results"


def test_result_order_is_a_seeded_shuffle() -> None:
    batch = make_batch(size=200)
    order = result_order(batch, seed=1)
    assert sorted(order) == list(range(200)) and order != list(range(200))
    assert result_order(batch, seed=1) == order
    assert result_order(batch, seed=2) != order


def test_list_pages_newest_first_with_cursors_both_ways() -> None:
    store = BatchStore()
    ids = []
    for step in range(7):
        batch = make_batch(size=1, batch_id=store.new_id(T0 + step))
        store.add(batch)
        ids.append(batch.id)
    assert ids == sorted(ids), "ids sort in creation order"
    newest_first = ids[::-1]

    page, more = store.page(3, None, None)
    assert [b.id for b in page] == newest_first[:3] and more
    page, more = store.page(3, None, newest_first[2])
    assert [b.id for b in page] == newest_first[3:6] and more
    page, more = store.page(3, None, newest_first[5])
    assert [b.id for b in page] == newest_first[6:] and not more
    page, more = store.page(2, newest_first[5], None)
    assert [b.id for b in page] == newest_first[3:5] and more
    page, more = store.page(10, newest_first[2], None)
    assert [b.id for b in page] == newest_first[:2] and not more

    store.delete(newest_first[2])
    page, _ = store.page(3, None, newest_first[2])
    assert [b.id for b in page] == newest_first[3:6], "a deleted cursor still works"


def test_a_retrieve_after_the_expiry_is_not_progress() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=1)
    assert ends_now(batch, T0 + EXPIRES_AFTER_SECONDS, timing, polled=True)
    advance(batch, T0 + EXPIRES_AFTER_SECONDS + 60, timing, polled=True)
    assert batch.end_reason == "expired" and request_counts(batch)["expired"] == 10


def test_a_canceling_batch_ends_canceled_even_a_day_later() -> None:
    batch, timing = make_batch(), Timing(ended_after_polls=1)
    cancel(batch, T0 + 1, timing)
    advance(batch, T0 + EXPIRES_AFTER_SECONDS + 1, timing, polled=False)
    assert batch.end_reason == "canceled" and request_counts(batch)["canceled"] == 10
