"""The emulator's operations, independent of HTTP: one method per API endpoint, plus
the test surface (stats, faults, clock). Errors are raised as ApiError."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from connector.emulator.clock import Clock
from connector.emulator.config import EmulatorConfig
from connector.emulator.errors import ApiError
from connector.emulator.faults import FaultInjector, FaultSpec, batch_expires
from connector.emulator.outputs import BatchContext, process_item
from connector.emulator.persistence import StateFile
from connector.emulator.state import (
    ENDED,
    Batch,
    Timing,
    advance,
    batch_object,
    cancel,
    result_lines,
    rfc3339,
)
from connector.emulator.store import BatchStore
from connector.emulator.tokens import PromptCache, estimate_input
from connector.emulator.validation import count_tokens_problem, validate_create_body


class Emulator:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.timing = Timing(config.ended_after_polls, config.processing_seconds)
        self.faults = FaultInjector(config.faults, config.seed)
        self.cache = PromptCache()
        self._state_file = StateFile(config.state_file) if config.state_file else None
        self.store = BatchStore(self._state_file)
        self.clock = Clock()
        if self._state_file is not None:
            offset, batches = self._state_file.load()
            self.clock = Clock(offset)
            self.store.load(batches)
        self._stats_lock = threading.Lock()
        self._batches_created = 0
        self._requests_received = 0
        self._by_custom_id: Counter[str] = Counter()
        self._http_requests: Counter[str] = Counter()

    # -- the API ---------------------------------------------------------------------

    def create(self, body: Any, *, anthropic_version: str | None, beta: bool) -> Batch:
        """Validate the envelope, process every item (params errors become errored
        lines), and commit the batch before answering."""
        pairs = validate_create_body(body, self.config.max_requests)
        now = self.clock.now()
        batch_id = self.store.new_id(now)
        context = BatchContext(
            batch_id=batch_id,
            seed=self.config.seed,
            faults=self.faults.spec,
            fault_seed=self.faults.seed,
            models=self.config.models,
            anthropic_version=anthropic_version,
            beta=beta,
            cache=self.cache,
            now=now,
        )
        results = [process_item(context, custom_id, params) for custom_id, params in pairs]
        batch = Batch(
            id=batch_id,
            created_at=now,
            custom_ids=[custom_id for custom_id, _ in pairs],
            lines=[result.line for result in results],
            result_types=[result.result_type for result in results],
            beta=beta,
            doomed=batch_expires(context.faults, context.fault_seed, batch_id),
        )
        fired = [result.fault for result in results if result.fault]
        self.faults.record(fired + (["batch_expire"] if batch.doomed else []))
        self.store.add(batch)
        with self._stats_lock:
            self._batches_created += 1
            self._requests_received += batch.size
            self._by_custom_id.update(batch.custom_ids)
        return batch

    def retrieve(self, batch_id: str) -> Batch:
        return self._observe(batch_id, polled=True)

    def list(
        self, limit: int, before_id: str | None, after_id: str | None
    ) -> tuple[list[Batch], bool]:
        if before_id is not None and after_id is not None:
            raise ApiError(400, "before_id and after_id cannot both be set")
        now = self.clock.now()
        with self.store.lock:
            page, has_more = self.store.page(limit, before_id, after_id)
            for batch in page:
                if advance(batch, now, self.timing, polled=False):
                    self.store.save(batch)
        return page, has_more

    def cancel(self, batch_id: str) -> Batch:
        with self.store.lock:
            batch = self._observe(batch_id, polled=False)
            if batch.status == ENDED:
                raise ApiError(400, f"Batch {batch_id} has already ended and cannot be canceled")
            cancel(batch, self.clock.now(), self.timing)
            self.store.save(batch)
            return batch

    def delete(self, batch_id: str) -> None:
        with self.store.lock:
            batch = self._observe(batch_id, polled=False)
            if batch.status != ENDED:
                raise ApiError(
                    400,
                    f"Batch {batch_id} cannot be deleted while its processing_status is "
                    f"{batch.status}; cancel it and wait for it to end first",
                )
            self.store.delete(batch_id)

    def results(self, batch_id: str) -> tuple[int, Iterator[bytes]]:
        """The number of result lines and an iterator over them (no newlines)."""
        with self.store.lock:
            batch = self._observe(batch_id, polled=False)
            if batch.status != ENDED:
                raise ApiError(
                    404, f"Results of batch {batch_id} are not available until it has ended"
                )
            archived = batch.archived_at(self.clock.now())
            if archived is not None:
                raise ApiError(
                    404, f"Results of batch {batch_id} were archived at {rfc3339(archived)}"
                )
            return batch.size, result_lines(batch, self.config.seed)

    def count_tokens(self, body: Any, *, beta: bool) -> int:
        count_tokens_problem(body, models=self.config.models, beta=beta)
        return estimate_input(body).total

    def render(self, batch: Batch, base_url: str) -> dict[str, Any]:
        results_url = f"{base_url}/v1/messages/batches/{batch.id}/results"
        return batch_object(batch, self.clock.now(), results_url)

    def _observe(self, batch_id: str, *, polled: bool) -> Batch:
        with self.store.lock:
            batch = self.store.get(batch_id)
            if advance(batch, self.clock.now(), self.timing, polled=polled):
                self.store.save(batch)
            return batch

    # -- the test surface ------------------------------------------------------------

    def count_call(self, endpoint: str) -> None:
        with self._stats_lock:
            self._http_requests[endpoint] += 1

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            return {
                "batches_created": self._batches_created,
                "requests_received": self._requests_received,
                "requests_by_custom_id": dict(self._by_custom_id),
                "faults_fired": self.faults.fired(),
                "batches": self.store.ids(),
                "http_requests": dict(self._http_requests),
                "faults": str(self.faults.spec),
                "clock_offset_seconds": self.clock.offset,
            }

    def set_faults(self, spec: FaultSpec | str | Mapping[str, Any]) -> FaultSpec:
        parsed = spec if isinstance(spec, FaultSpec) else FaultSpec.from_json(spec)
        self.faults.replace(parsed)
        return parsed

    def advance_clock(self, seconds: float) -> float:
        offset = self.clock.advance(seconds)
        if self._state_file is not None:
            with self.store.lock:
                self._state_file.save_clock(offset)
        return offset

    def close(self) -> None:
        if self._state_file is not None:
            with self.store.lock:
                self._state_file.close()
