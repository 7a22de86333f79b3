"""The ledger queries identical on every warehouse: each implementation supplies
`_read` (run one shared query text, return its rows) and `_write` (run statements in
one transaction) and inherits these."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from connector.errors import LedgerError
from connector.ledger import queries as q
from connector.ledger.base import (
    BatchRecord,
    Calibration,
    Deferrals,
    InFlightBacklog,
    OrphanRecord,
    StatusRow,
    SyncGuard,
    UsageRow,
)
from connector.ledger.params import batch_record, history_params, history_row, status_params
from connector.policy import IN_FLIGHT, BatchStatus, RowHistory
from connector.project import Relation

DEFERRAL_CHUNK = 20_000


class LedgerReads(ABC):
    _schema: str  # the ledger schema
    _guard: SyncGuard | None = None  # set while this process holds the sync guard

    @abstractmethod
    def _read(self, text: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]: ...

    @abstractmethod
    def _write(self, steps: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Run each (query text, params) in order, in one transaction."""

    @abstractmethod
    def _write_count(self, text: str, params: dict[str, Any]) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""

    # ------------------------------------------------ exactly-once bookkeeping
    def mark_create_started(self, submission_id: str) -> None:
        if self._guard is None:
            raise LedgerError("a create call needs the sync guard (enrich sync holds it)")
        self._guard.check()
        params = {"sid": submission_id, "submitting": BatchStatus.SUBMITTING.value}
        if self._write_count(q.MARK_CREATE_STARTED, params) != 1:
            raise LedgerError(
                f"submission {submission_id} is no longer 'submitting' (abandoned by a "
                "reconcile?); its batch is not created"
            )

    def mark_reconcile_seen(self, submission_id: str, note: str | None) -> None:
        params = {"sid": submission_id, "submitting": BatchStatus.SUBMITTING.value, "note": note}
        self._write([(q.MARK_RECONCILE_SEEN, params)])

    def record_orphan(
        self,
        batch_id: str,
        submission_id: str,
        enrichment: str,
        request_count: int | None,
        note: str,
    ) -> None:
        params = {
            "batch_id": batch_id,
            "sid": submission_id,
            "enrichment": enrichment,
            "request_count": request_count,
            "note": note,
        }
        self._write([(q.INSERT_ORPHAN, params)])

    def orphans(self) -> list[OrphanRecord]:
        rows = self._read(q.ORPHANS, {})
        return [OrphanRecord(str(r[0]), str(r[1]), str(r[2]), r[3], r[4], r[5]) for r in rows]

    def version(self) -> int | None:
        if not self._read(q.VERSION_TABLE_EXISTS, {"schema": self._schema}):
            return None
        got = self._read(q.VERSION, {})
        return None if not got or got[0][0] is None else int(got[0][0])

    def flagged_columns(self, relation: Relation) -> list[str]:
        rows = self._read(q.RELATION_COLUMNS, {"schema": relation.schema, "name": relation.name})
        return [str(r[0]) for r in rows]

    def history(self, enrichment: str, pairs: Sequence[tuple[str, str]]) -> dict[str, RowHistory]:
        """What the ledger knows of each (custom_id, request_hash) about to be sent."""
        if not pairs:
            return {}
        rows = self._read(q.HISTORY, history_params(enrichment, pairs))
        return dict(history_row(r) for r in rows)

    def batches(self, statuses: Iterable[BatchStatus]) -> list[BatchRecord]:
        rows = self._read(q.BATCHES, {"statuses": [s.value for s in statuses]})
        return [batch_record(r) for r in rows]

    def known_batch_ids(self, batch_ids: Sequence[str]) -> set[str]:
        return {str(r[0]) for r in self._read(q.KNOWN_BATCH_IDS, {"ids": list(batch_ids)})}

    def submission_custom_ids(self, submission_id: str) -> list[str]:
        return [str(r[0]) for r in self._read(q.SUBMISSION_CUSTOM_IDS, {"sid": submission_id})]

    def now(self) -> datetime:
        value: datetime = self._read(q.NOW, {})[0][0]
        return value

    def tally_landed(self) -> None:
        """Tally every landed batch that has no tally yet (queries.TALLY_LANDED)."""
        self._write([(q.TALLY_LANDED, _tally_params())])

    def status(self) -> list[StatusRow]:
        rows = self._read(q.STATUS, status_params())
        return [_status_row(r) for r in rows]

    # ----------------------------------------------------------- cost controls
    def calibration(self, enrichment: str, recent: int = 20_000) -> list[Calibration]:
        """Landed usage per prompt_version, over the `recent` latest succeeded results."""
        rows = self._read(q.CALIBRATION, {"enrichment": enrichment, "recent": recent})
        return [Calibration(str(r[0]), *(int(v or 0) for v in r[1:])) for r in rows]

    def version_is_live(self, enrichment: str, prompt_version: str, pilot_flag: str) -> bool:
        """Whether a request that is not a pilot used this prompt_version."""
        params = {"enrichment": enrichment, "prompt_version": prompt_version, "pilot": pilot_flag}
        return int(self._read(q.LIVE_VERSION, params)[0][0]) > 0

    def estimated_since(self, enrichment: str, since: datetime) -> float:
        rows = self._read(
            q.ESTIMATED_SINCE,
            {
                "enrichment": enrichment,
                "since": since,
                "abandoned": BatchStatus.ABANDONED.value,
            },
        )
        return float(rows[0][0] or 0.0)

    def usage(self, day_start: datetime) -> list[UsageRow]:
        rows = self._read(q.USAGE, {"day_start": day_start, **_tally_params()})
        return [
            UsageRow(str(r[0]), str(r[1]), bool(r[2]), *(int(v or 0) for v in r[3:])) for r in rows
        ]

    def in_flight_estimates(self) -> dict[str, float]:
        rows = self._read(q.IN_FLIGHT_ESTIMATE, {"in_flight": [s.value for s in IN_FLIGHT]})
        return {str(r[0]): float(r[1] or 0.0) for r in rows}

    def shared_counts(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._read(q.SHARED_COUNTS, {})}

    def deferrals(self, enrichment: str) -> Deferrals:
        found = Deferrals()
        after = ""
        while True:
            params = {"enrichment": enrichment, "after": after, "page": DEFERRAL_CHUNK}
            rows = self._read(q.DEFERRALS, params)
            for custom_id, first_deferred_at in rows:
                found.add(str(custom_id), first_deferred_at)
            if len(rows) < DEFERRAL_CHUNK:
                return found
            after = str(rows[-1][0])

    def record_deferrals(self, enrichment: str, custom_ids: Sequence[str]) -> None:
        """Upsert the rows a budget held back, in one transaction, a statement per
        chunk of ids (a budget can hold back a million: never one list of them all)."""

        def steps() -> Iterator[tuple[str, dict[str, Any]]]:
            for start in range(0, len(custom_ids), DEFERRAL_CHUNK):
                ids = list(custom_ids[start : start + DEFERRAL_CHUNK])
                yield q.UPSERT_DEFERRALS, {"enrichment": enrichment, "ids": ids}

        if custom_ids:
            self._write(steps())

    def prune_deferrals(self, enrichment: str, since: datetime) -> None:
        self._write([(q.PRUNE_DEFERRALS, {"enrichment": enrichment, "since": since})])

    # ------------------------------------------------------ dedupe across runs
    def sharable_requests(
        self, enrichment: str, wanted: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[str, str]]:
        """(request_hash, max_tokens) -> (submission_id, custom_id) of a request of the
        enrichment asking exactly that which is in flight or already succeeded."""
        if not wanted:
            return {}
        rows = self._read(
            q.SHARABLE_REQUESTS,
            {
                "enrichment": enrichment,
                "hashes": [w[0] for w in wanted],
                "max_tokens": [w[1] for w in wanted],
                "in_flight": [s.value for s in IN_FLIGHT],
            },
        )
        return {(str(r[0]), int(r[1])): (str(r[2]), str(r[3])) for r in rows}

    def attach_shared_keys(
        self, enrichment: str, rows: Sequence[tuple[str, str, str, str]]
    ) -> None:
        """Record, in one committed write, keys that share an already recorded request:
        (submission_id, custom_id of the request, the key's custom_id, its key JSON).
        A budget no longer holds those keys back."""
        if not rows:
            return
        self._write(
            [
                (
                    q.ATTACH_SHARED_KEYS,
                    {
                        "sid": [r[0] for r in rows],
                        "custom_id": [r[1] for r in rows],
                        "member": [r[2] for r in rows],
                        "primary_key": [r[3] for r in rows],
                    },
                ),
                (q.DELETE_DEFERRALS, {"enrichment": enrichment, "ids": [r[2] for r in rows]}),
            ]
        )

    # ------------------------------------------------------------- the backlog
    def in_flight_backlog(self) -> dict[str, InFlightBacklog]:
        """Per enrichment with batches in flight: rows, requests, oldest intent."""
        rows = self._read(q.IN_FLIGHT_BACKLOG, {"in_flight": [s.value for s in IN_FLIGHT]})
        found: dict[str, InFlightBacklog] = {}
        for enrichment, intent_at, requests, shared in rows:
            name = str(enrichment)
            seen = found.get(name, InFlightBacklog(name, 0, 0, intent_at))
            oldest = seen.oldest_intent_at
            found[name] = InFlightBacklog(
                name,
                seen.rows + int(requests) + int(shared),
                seen.requests + int(requests),
                intent_at if oldest is None else min(oldest, intent_at),
            )
        return found


def _status_row(r: Sequence[Any]) -> StatusRow:
    batches, requests, landed, succeeded, retryable, terminal, missing, rejected = (
        int(v) for v in r[1:9]
    )
    return StatusRow(
        str(r[0]), batches, requests, landed, succeeded, retryable, terminal, missing, rejected
    )


def _tally_params() -> dict[str, object]:
    params = status_params()
    return {"landed": params["landed"], "terminal": params["terminal"]}
