"""What the orchestration needs from a warehouse: the ledger interface and its records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from connector.policy import BatchStatus, RowHistory
from connector.project import Relation
from connector.result_lines import CopyRows


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
    lines: int
    foreign_lines: int  # lines whose custom_id is not a request of this submission
    missing_requests: int  # requests of this submission without a line


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
    def record_intent(
        self,
        submission_id: str,
        enrichment: str,
        body_bytes: int,
        requests: Sequence[RequestRecord],
    ) -> None: ...

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
    ) -> LandSummary:
        """Land a batch's result lines and mark it landed, in one transaction.

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

    def now(self) -> datetime: ...

    # cost controls
    def calibration(self, enrichment: str, recent: int = 20_000) -> list[Calibration]: ...

    def estimated_since(self, enrichment: str, since: datetime) -> float: ...

    def usage(self, day_start: datetime) -> list[UsageRow]: ...

    def in_flight_estimates(self) -> dict[str, float]: ...

    def shared_counts(self) -> dict[str, int]: ...

    def deferrals(self, enrichment: str) -> dict[str, datetime]: ...

    def record_deferrals(self, enrichment: str, custom_ids: Sequence[str]) -> None: ...

    def prune_deferrals(self, enrichment: str, since: datetime) -> None: ...
