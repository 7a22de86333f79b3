"""A batch and its state machine.

    in_progress ──(ended_after_polls retrieves, or processing_seconds)──▶ ended
        │                                                                 ▲
        └──cancel──▶ canceling ──(next retrieve, or 24 h)─────────────────┤
        └──24 h after created_at, not ended──▶ ended (unprocessed items expired)

Items are processed in request order as the batch progresses (by retrieves, or by
time). When a batch is canceled or expires, the items processed so far keep their
result; the rest end `canceled` or `expired`. Results stay downloadable until
`archived_at` (29 days after `created_at`).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connector.emulator.outputs import CANCELED, EXPIRED, canceled_line, expired_line

IN_PROGRESS, CANCELING, ENDED = "in_progress", "canceling", "ended"
EXPIRES_AFTER_SECONDS = 24 * 3600.0
ARCHIVED_AFTER_SECONDS = 29 * 24 * 3600.0
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")


@dataclass(frozen=True)
class Timing:
    """When batches end: after `ended_after_polls` retrieves, or, if set, after
    `processing_seconds` of emulator time."""

    ended_after_polls: int = 1
    processing_seconds: float | None = None


@dataclass
class Batch:
    """A batch. Its items are processed once, in the background, right after create:
    until then `pending` holds their params and `ready` is unset; afterwards `lines`
    holds each item's result line (should the batch get to it) and `result_types`
    that line's type."""

    id: str
    created_at: float
    custom_ids: list[str]
    pending: list[Any] | None = None
    lines: list[bytes] = field(default_factory=list)
    result_types: list[str] = field(default_factory=list)
    anthropic_version: str | None = None
    fault_spec: str = ""
    fault_seed: int = 0
    beta: bool = False
    doomed: bool = False  # the batch_expire fault: every item ends expired
    status: str = IN_PROGRESS
    polls: int = 0
    cancel_initiated_at: float | None = None
    cancel_progress: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None  # completed | canceled | expired | batch_expire
    processed: int = 0  # items (a prefix in request order) that kept their own result
    counts: dict[str, int] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.custom_ids)

    @property
    def expires_at(self) -> float:
        return self.created_at + EXPIRES_AFTER_SECONDS

    def archived_at(self, now: float) -> float | None:
        archive_time = self.created_at + ARCHIVED_AFTER_SECONDS
        return archive_time if self.status == ENDED and now >= archive_time else None

    def meta(self) -> dict[str, Any]:
        """Everything but the items, for persistence."""
        return {
            "id": self.id,
            "created_at": self.created_at,
            "anthropic_version": self.anthropic_version,
            "fault_spec": self.fault_spec,
            "fault_seed": self.fault_seed,
            "beta": self.beta,
            "doomed": self.doomed,
            "status": self.status,
            "polls": self.polls,
            "cancel_initiated_at": self.cancel_initiated_at,
            "cancel_progress": self.cancel_progress,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "processed": self.processed,
            "counts": self.counts,
        }


def progress(batch: Batch, now: float, timing: Timing) -> float:
    """The share of items processed so far, in [0, 1]."""
    if timing.processing_seconds is not None:
        if timing.processing_seconds <= 0:
            return 1.0
        return min(1.0, max(0.0, (now - batch.created_at) / timing.processing_seconds))
    # The batch ends on retrieve N + 1: that is when its last item is done.
    return min(1.0, batch.polls / (timing.ended_after_polls + 1))


def ends_now(batch: Batch, now: float, timing: Timing, *, polled: bool) -> bool:
    """Whether `advance` with these arguments would end the batch (it then needs the
    batch's processed results)."""
    if batch.status == ENDED:
        return False
    if _time_end(batch, now, timing) is not None or now >= batch.expires_at:
        return True
    if not polled:
        return False
    return batch.status == CANCELING or _polls_end(batch.polls + 1, timing)


def advance(batch: Batch, now: float, timing: Timing, *, polled: bool) -> bool:
    """Apply every transition due at `now`; `polled` marks a retrieve. True if changed.

    What fell due before this call (the processing time, the 24 h expiry) applies
    first; then the call itself counts as a poll. Ending a batch needs its results:
    callers wait for `batch.ready` first."""
    if batch.status == ENDED:
        return False
    time_end = _time_end(batch, now, timing)
    if time_end is not None:
        _end(batch, time_end, "batch_expire" if batch.doomed else "completed", 1.0)
        return True
    if now >= batch.expires_at:
        if batch.status == CANCELING:  # canceling takes far less than a day
            _end(batch, batch.expires_at, "canceled", batch.cancel_progress or 0.0)
        else:
            _end(batch, batch.expires_at, "expired", progress(batch, batch.expires_at, timing))
        return True
    if not polled:
        return False
    batch.polls += 1
    if batch.status == CANCELING:
        _end(batch, now, "canceled", batch.cancel_progress or 0.0)
    elif _polls_end(batch.polls, timing):
        _end(batch, now, "batch_expire" if batch.doomed else "completed", 1.0)
    return True


def _time_end(batch: Batch, now: float, timing: Timing) -> float | None:
    """When an in-progress batch finished processing by time, if it has by `now`."""
    if timing.processing_seconds is None or batch.status != IN_PROGRESS:
        return None
    end = batch.created_at + timing.processing_seconds
    return end if now >= end and end < batch.expires_at else None


def _polls_end(polls: int, timing: Timing) -> bool:
    return timing.processing_seconds is None and polls > timing.ended_after_polls


def cancel(batch: Batch, now: float, timing: Timing) -> None:
    """in_progress → canceling; the items processed by now keep their results."""
    if batch.status == IN_PROGRESS:
        batch.status = CANCELING
        batch.cancel_initiated_at = now
        batch.cancel_progress = progress(batch, now, timing)


def _end(batch: Batch, at: float, reason: str, share: float) -> None:
    batch.status = ENDED
    batch.ended_at = at
    batch.end_reason = reason
    batch.processed = 0 if reason == "batch_expire" else int(share * batch.size)
    counts = dict.fromkeys(RESULT_TYPES, 0)
    for result_type in batch.result_types[: batch.processed]:
        counts[result_type] += 1
    counts[CANCELED if reason == "canceled" else EXPIRED] += batch.size - batch.processed
    batch.counts = counts


def request_counts(batch: Batch) -> dict[str, int]:
    if batch.status != ENDED:
        return {"processing": batch.size, **dict.fromkeys(RESULT_TYPES, 0)}
    return {"processing": 0, **batch.counts}


def rfc3339(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def batch_object(batch: Batch, now: float, results_url: str) -> dict[str, Any]:
    """The MessageBatch the API shows at `now`."""
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": request_counts(batch),
        "ended_at": rfc3339(batch.ended_at),
        "created_at": rfc3339(batch.created_at),
        "expires_at": rfc3339(batch.expires_at),
        "archived_at": rfc3339(batch.archived_at(now)),
        "cancel_initiated_at": rfc3339(batch.cancel_initiated_at),
        "results_url": results_url if batch.status == ENDED else None,
    }


def result_order(batch: Batch, seed: int) -> list[int]:
    """The (seeded, shuffled) order in which the results file lists the items."""
    order = list(range(batch.size))
    digest = hashlib.blake2b(f"{seed}\x1f{batch.id}".encode(), digest_size=8).digest()
    random.Random(int.from_bytes(digest)).shuffle(order)
    return order


def result_lines(batch: Batch, seed: int) -> Iterator[bytes]:
    """The ended batch's result lines (without newlines), in results-file order."""
    unprocessed = canceled_line if batch.end_reason == "canceled" else expired_line
    lines, custom_ids, processed = batch.lines, batch.custom_ids, batch.processed
    for index in result_order(batch, seed):
        yield lines[index] if index < processed else unprocessed(custom_ids[index])
