"""The batches the emulator holds: lookup, time-sortable ids, paging, persistence."""

from __future__ import annotations

import bisect
import secrets
import threading

from connector.emulator.errors import ApiError
from connector.emulator.persistence import StateFile
from connector.emulator.state import Batch

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, index = divmod(number, 62)
        chars.append(_BASE62[index])
    return "".join(reversed(chars))


class BatchStore:
    """Batches by id. Ids sort by creation (`msgbatch_01` + a base62 microsecond stamp +
    random characters), so list cursors keep working after their batch is deleted.

    `lock` guards batches and their transitions; hold it around read-modify-write."""

    def __init__(self, state_file: StateFile | None = None) -> None:
        self.lock = threading.RLock()
        self._state_file = state_file
        self._batches: dict[str, Batch] = {}
        self._ids: list[str] = []
        self._last_stamp = 0

    def load(self, batches: list[Batch]) -> None:
        with self.lock:
            for batch in batches:
                self._batches[batch.id] = batch
                bisect.insort(self._ids, batch.id)
                self._last_stamp = max(self._last_stamp, int(batch.created_at * 1e6))

    def new_id(self, now: float) -> str:
        with self.lock:
            self._last_stamp = max(self._last_stamp + 1, int(now * 1e6))
            suffix = "".join(secrets.choice(_BASE62) for _ in range(12))
            return f"msgbatch_01{_base62(self._last_stamp, 10)}{suffix}"

    def add(self, batch: Batch) -> None:
        with self.lock:
            if self._state_file is not None:
                self._state_file.insert(batch)
            self._batches[batch.id] = batch
            bisect.insort(self._ids, batch.id)

    def get(self, batch_id: str) -> Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"No batch found with id {batch_id!r}")
        return batch

    def save(self, batch: Batch) -> None:
        """Persist a batch's changed state (a no-op without a state file)."""
        if self._state_file is not None:
            with self.lock:
                self._state_file.update(batch)

    def save_results(self, batch: Batch) -> None:
        """Persist a batch's processed results (a no-op without a state file)."""
        if self._state_file is not None:
            with self.lock:
                self._state_file.save_results(batch)

    def pending(self) -> list[Batch]:
        """Batches whose items still await processing, oldest first."""
        with self.lock:
            return [self._batches[i] for i in self._ids if not self._batches[i].ready.is_set()]

    def delete(self, batch_id: str) -> None:
        with self.lock:
            self.get(batch_id)
            if self._state_file is not None:
                self._state_file.delete(batch_id)
            del self._batches[batch_id]
            self._ids.remove(batch_id)

    def ids(self) -> list[str]:
        with self.lock:
            return list(self._ids)

    def page(
        self, limit: int, before_id: str | None, after_id: str | None
    ) -> tuple[list[Batch], bool]:
        """A page of batches, newest first; `after_id` pages to older batches,
        `before_id` to newer ones. Returns the page and whether more lie that way."""
        with self.lock:
            if before_id is not None:
                newer = self._ids[bisect.bisect_right(self._ids, before_id) :]
                chosen = newer[:limit]
                has_more = len(newer) > limit
            else:
                end = (
                    len(self._ids) if after_id is None else bisect.bisect_left(self._ids, after_id)
                )
                chosen = self._ids[max(0, end - limit) : end]
                has_more = end > limit
            return [self._batches[i] for i in reversed(chosen)], has_more
