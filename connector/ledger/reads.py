"""The read-only ledger queries, identical on every warehouse: each implementation
supplies `_read` (run one shared query text, return its rows) and inherits these."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from connector.ledger import queries as q
from connector.ledger.base import BatchRecord, StatusRow
from connector.ledger.params import batch_record, history_params, history_row, status_params
from connector.policy import BatchStatus, RowHistory
from connector.project import Relation


class LedgerReads(ABC):
    _schema: str  # the ledger schema

    @abstractmethod
    def _read(self, text: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]: ...

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

    def status(self) -> list[StatusRow]:
        rows = self._read(q.STATUS, status_params())
        return [StatusRow(str(r[0]), *(int(v) for v in r[1:])) for r in rows]
