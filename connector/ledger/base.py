"""What the orchestration needs from a warehouse: the ledger interface and its records."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, overload

from connector.policy import BatchStatus, RowHistory
from connector.project import Relation
from connector.result_lines import CopyRows


def sequence_position(i: int, length: int) -> int:
    """A sequence index, negative ones counted from the end; IndexError out of range."""
    position = i + length if i < 0 else i
    if not 0 <= position < length:
        raise IndexError(i)
    return position


class CustomIds(Sequence[str]):
    """custom_ids, appended in order, kept as one ASCII blob (about 12 bytes an id where a
    list of str takes about 65), with an exact lookup of an id's position built on first
    use (an open-addressing table of positions, 16 bytes an id). custom_ids are ASCII
    by construction (`^[a-zA-Z0-9_-]{1,64}$`)."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("q")
        self._table: array[int] | None = None
        for custom_id in ids:
            self.append(custom_id)

    def append(self, custom_id: str) -> None:
        self._blob += custom_id.encode("ascii")
        self._ends.append(len(self._blob))
        self._table = None

    def __len__(self) -> int:
        return len(self._ends)

    def _raw(self, i: int) -> bytes:
        return bytes(self._blob[self._ends[i - 1] if i else 0 : self._ends[i]])

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._raw(sequence_position(i, len(self))).decode("ascii")

    def __iter__(self) -> Iterator[str]:
        start = 0
        blob = self._blob
        for end in self._ends:
            yield blob[start:end].decode("ascii")
            start = end

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CustomIds({list(self)!r})"

    def position(self, custom_id: str) -> int:
        """Where custom_id was appended first, or -1."""
        if self._table is None:
            self._table = self._build()
        table, mask = self._table, len(self._table) - 1
        raw = custom_id.encode("ascii", "replace")
        slot = hash(raw) & mask
        while (i := table[slot]) >= 0:
            if self._raw(i) == raw:
                return i
            slot = (slot + 1) & mask
        return -1

    def __contains__(self, custom_id: object) -> bool:
        return isinstance(custom_id, str) and self.position(custom_id) >= 0

    def _build(self) -> array[int]:
        size = 8
        while size < 2 * len(self):
            size *= 2
        table, mask = array("q", [-1]) * size, size - 1
        start = 0
        for i, end in enumerate(self._ends):
            raw = bytes(self._blob[start:end])
            start = end
            slot = hash(raw) & mask
            while table[slot] >= 0:
                if self._raw(table[slot]) == raw:
                    break  # a repeated id: the first position answers
                slot = (slot + 1) & mask
            else:
                table[slot] = i
        return table


class Deferrals(Mapping[str, datetime]):
    """custom_id -> when a budget first held the row back, compact (CustomIds and an
    array of POSIX timestamps, UTC): a budget may hold back a million rows."""

    def __init__(self) -> None:
        self._ids = CustomIds()
        self._stamps = array("d")

    def add(self, custom_id: str, first_deferred_at: datetime) -> None:
        self._ids.append(custom_id)
        self._stamps.append(first_deferred_at.timestamp())

    def __getitem__(self, custom_id: str) -> datetime:
        i = self._ids.position(custom_id)
        if i < 0:
            raise KeyError(custom_id)
        return datetime.fromtimestamp(self._stamps[i], UTC)

    def __contains__(self, custom_id: object) -> bool:
        return custom_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(slots=True)
class RequestRecord:
    custom_id: str
    primary_key_json: str  # {"column": value, ...}
    request_hash: str
    input_hash: str | None
    attempt: int
    flag_reason: str
    model: str
    prompt_version: str
    max_tokens: int
    params_bytes: int
    estimated_usd: float | None = None  # the cost estimate when submitted (budgets)
    # dedupe: other rows served by this request, as (their custom_id, their key JSON);
    # None rather than an empty list per request (100k lists cost the GC measurably)
    shared: list[tuple[str, str]] | None = None


@dataclass(frozen=True)
class BatchRecord:
    submission_id: str
    batch_id: str | None
    enrichment: str
    status: BatchStatus
    request_count: int
    intent_at: datetime
    api_created_at: datetime | None
    last_polled_at: datetime | None
    note: str | None
    # v3 (docs/ledger.md): the marker request's custom_id (None: a batch sent before v3),
    # when the last create call started (None: none did), when a guarded sync first
    # found the intent unresolved
    marker_custom_id: str | None = None
    create_started_at: datetime | None = None
    reconcile_seen_at: datetime | None = None


@dataclass(frozen=True)
class PollUpdate:
    processing_status: str
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class StatusRow:
    enrichment: str
    in_flight_batches: int
    in_flight_requests: int
    landed_batches: int
    succeeded: int
    failed_retryable: int
    failed_terminal: int
    missing: int
    rejected: int
    # cost, from landed usage at the seed's prices (None: the model has no price)
    spend_today_usd: float | None = 0.0
    spend_total_usd: float | None = 0.0
    in_flight_estimated_usd: float = 0.0  # the estimates recorded when submitted
    requests_saved: int = 0  # dedupe: rows served by another row's request
    # exactly-once: intents whose create outcome is not known yet, batches on the API
    # this ledger created but holds no row for, and a line about each (docs/ledger.md)
    unresolved_intents: int = 0
    orphan_batches: int = 0
    attention: tuple[str, ...] = ()
    # the backlog (docs/running.md): rows the flagged view selected at the last dbt build
    # (the enrich_backlog model; None: not built yet), by flag_reason, and the age in
    # hours of the one waiting longest; rows in flight now (with dedupe, the rows that
    # share a request too) and the age of the oldest batch in flight, from the ledger
    flagged_rows: int | None = None
    flagged_by_reason: Mapping[str, int] = field(default_factory=dict)
    oldest_flagged_age_hours: float | None = None
    in_flight_rows: int = 0
    oldest_in_flight_age_hours: float | None = None
    backlog_computed_at: datetime | None = None  # when dbt built enrich_backlog


@dataclass(frozen=True)
class InFlightBacklog:
    """What one enrichment has in flight: rows (its requests and the keys sharing
    them), requests, and when the oldest batch in flight was recorded."""

    enrichment: str
    rows: int
    requests: int
    oldest_intent_at: datetime | None


@dataclass(frozen=True)
class UsageRow:
    """Token usage of landed succeeded results of one enrichment and model."""

    enrichment: str
    model: str
    is_today: bool  # landed since the start of the UTC day
    results: int
    input_tokens: int
    output_tokens: int
    cache_write_5m_tokens: int
    cache_write_1h_tokens: int
    cache_read_tokens: int


@dataclass(frozen=True)
class Calibration:
    """Landed usage of one prompt_version: what estimates learn from."""

    prompt_version: str
    results: int
    params_bytes: int
    input_tokens: int  # uncached + cache writes + cache reads
    output_tokens: int


@dataclass(frozen=True)
class LandSummary:
    lines: int  # result lines of rows (the marker's line is not counted, nor kept)
    foreign_lines: int  # lines whose custom_id is not a request of this submission
    missing_requests: int  # requests of this submission without a line
    # the batch's marker line was among the results (None: the batch has no marker)
    marker_found: bool | None = None


@dataclass(frozen=True)
class OrphanRecord:
    """A batch this ledger provably created that no batch row holds (billed, not landed)."""

    batch_id: str
    submission_id: str
    enrichment: str
    request_count: int | None
    found_at: datetime
    note: str | None


class SyncGuard(Protocol):
    """Held by the one sync that may change a ledger (docs/ledger.md, "Two syncs").

    `check()` raises GuardLostError when the guard is no longer held (its session
    died): the holder must then stop before its next external step."""

    def check(self) -> None: ...


class Ledger(Protocol):
    def close(self) -> None: ...

    def version(self) -> int | None: ...

    # reading the flagged view
    def flagged_columns(self, relation: Relation) -> list[str]: ...

    def duplicate_keys(
        self, relation: Relation, key: Sequence[str]
    ) -> list[tuple[object, ...]]: ...

    def stream_flagged(
        self, relation: Relation, columns: Sequence[str], chunk_rows: int
    ) -> Iterator[list[tuple[object, ...]]]: ...

    def history(
        self, enrichment: str, pairs: Sequence[tuple[str, str]]
    ) -> dict[str, RowHistory]: ...

    # state changes, each committed before returning
    def sync_guard(self, wait_seconds: float) -> AbstractContextManager[SyncGuard]:
        """Hold the ledger's sync guard for the block; raise SyncBusyError when another
        sync holds it for longer than `wait_seconds`."""
        ...

    def record_intent(
        self,
        submission_id: str,
        enrichment: str,
        body_bytes: int,
        requests: Sequence[RequestRecord],
        *,
        marker: str | None = None,
    ) -> None: ...

    def mark_create_started(self, submission_id: str) -> None:
        """Commit that a create call for this intent starts now; LedgerError if the
        intent is no longer `submitting` (then no create may be made for it)."""
        ...

    def mark_reconcile_seen(self, submission_id: str, note: str | None) -> None: ...

    def record_orphan(
        self,
        batch_id: str,
        submission_id: str,
        enrichment: str,
        request_count: int | None,
        note: str,
    ) -> None: ...

    def orphans(self) -> list[OrphanRecord]: ...

    def transition(
        self,
        submission_id: str,
        old: BatchStatus,
        new: BatchStatus,
        *,
        batch_id: str | None = None,
        note: str | None = None,
    ) -> None: ...

    def record_poll(self, submission_id: str, update: PollUpdate) -> None: ...

    def land(
        self,
        submission_id: str,
        batch_id: str,
        results: Iterable[bytes],
        framer: CopyRows | None = None,
        *,
        require_own: bool = False,
        marker: str | None = None,
    ) -> LandSummary:
        """Land a batch's result lines and mark it landed, in one transaction.

        With a `marker`, the marker's line is removed in the same transaction and the
        summary says whether it was there; with `require_own` too, a batch without it
        lands nothing (it is not this intent's batch).

        With a `framer`, `results` is the raw results stream (JSONL bytes as the API
        sends them) and each warehouse decides how to load it: Postgres frames it with
        `framer.rows` for COPY, DuckDB hands raw lines to its JSON reader. Without one,
        `results` is already framed (`CopyRows.rows`)."""
        ...

    def record_rejections(
        self, enrichment: str, rows: Sequence[tuple[str | None, str]]
    ) -> None: ...

    # queries
    def batches(self, statuses: Iterable[BatchStatus]) -> list[BatchRecord]: ...

    def known_batch_ids(self, batch_ids: Sequence[str]) -> set[str]: ...

    def submission_custom_ids(self, submission_id: str) -> list[str]: ...

    def status(self) -> list[StatusRow]: ...

    def tally_landed(self) -> None: ...

    def in_flight_backlog(self) -> dict[str, InFlightBacklog]: ...

    def now(self) -> datetime: ...

    # cost controls
    def calibration(self, enrichment: str, recent: int = 20_000) -> list[Calibration]: ...

    def estimated_since(self, enrichment: str, since: datetime) -> float: ...

    def version_is_live(self, enrichment: str, prompt_version: str, pilot_flag: str) -> bool: ...

    def usage(self, day_start: datetime) -> list[UsageRow]: ...

    def in_flight_estimates(self) -> dict[str, float]: ...

    def shared_counts(self) -> dict[str, int]: ...

    def deferrals(self, enrichment: str) -> Mapping[str, datetime]: ...

    def record_deferrals(self, enrichment: str, custom_ids: Sequence[str]) -> None: ...

    def prune_deferrals(self, enrichment: str, since: datetime) -> None: ...

    # dedupe across runs
    def sharable_requests(
        self, enrichment: str, wanted: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[str, str]]: ...

    def attach_shared_keys(
        self, enrichment: str, rows: Sequence[tuple[str, str, str, str]]
    ) -> None: ...
