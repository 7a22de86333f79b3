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
from connector.emulator.faults import FaultInjector, FaultSpec
from connector.emulator.outputs import BatchContext, ItemResult
from connector.emulator.persistence import StateFile
from connector.emulator.processor import Processor
from connector.emulator.state import (
    ENDED,
    Batch,
    Timing,
    advance,
    batch_object,
    cancel,
    ends_now,
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
        self.cache = PromptCache(config.min_cache_tokens)
        self._state_file = StateFile(config.state_file) if config.state_file else None
        self.store = BatchStore(self._state_file)
        self.clock = Clock()
        self.processor = Processor(self._finish_processing)
        if self._state_file is not None:
            offset, batches = self._state_file.load()
            self.clock = Clock(offset)
            self.store.load(batches)
            for batch in self.store.pending():
                self.processor.submit(batch, self._context(batch))
        self._stats_lock = threading.Lock()
        self._batches_created = 0
        self._requests_received = 0
        self._by_custom_id: Counter[str] = Counter()
        self._http_requests: Counter[str] = Counter()
        self._calls_in_progress = 0
        self._http_seconds: dict[str, float] = {}

    # -- the API ---------------------------------------------------------------------

    def create(self, body: Any, *, anthropic_version: str | None, beta: bool) -> Batch:
        """Validate the envelope and commit the batch; its items are processed in the
        background (params errors become errored lines then)."""
        pairs = validate_create_body(body, self.config.max_requests)
        now = self.clock.now()
        batch_id = self.store.new_id(now)
        batch = Batch(
            id=batch_id,
            created_at=now,
            custom_ids=[custom_id for custom_id, _ in pairs],
            pending=[params for _, params in pairs],
            anthropic_version=anthropic_version,
            fault_spec=str(self.faults.spec),
            fault_seed=self.faults.batch_seed(),
            beta=beta,
            doomed=self.faults.call_fault("batch_expire"),
        )
        self.store.add(batch)
        with self._stats_lock:
            self._batches_created += 1
            self._requests_received += batch.size
            self._by_custom_id.update(batch.custom_ids)
        self.processor.submit(batch, self._context(batch))
        return batch

    def _context(self, batch: Batch) -> BatchContext:
        spec = FaultSpec.parse(batch.fault_spec)
        return BatchContext(
            batch_id=batch.id,
            seed=self.config.seed,
            faults=spec,
            fault_seed=batch.fault_seed,
            models=self.config.models,
            anthropic_version=batch.anthropic_version,
            beta=batch.beta,
            cache=self.cache,
            now=batch.created_at,
        )

    def _finish_processing(self, batch: Batch, results: list[ItemResult]) -> None:
        try:
            with self.store.lock:
                batch.lines = [result.line for result in results]
                batch.result_types = [result.result_type for result in results]
                batch.pending = None
                self.store.save_results(batch)
            self.faults.record(result.fault for result in results if result.fault)
        finally:
            batch.ready.set()  # waiters must never hang, even if saving failed

    def retrieve(self, batch_id: str) -> Batch:
        return self._observe(batch_id, polled=True)

    def list(
        self, limit: int, before_id: str | None, after_id: str | None
    ) -> tuple[list[Batch], bool]:
        if before_id is not None and after_id is not None:
            raise ApiError(400, "before_id and after_id cannot both be set")
        page, has_more = self.store.page(limit, before_id, after_id)
        for batch in page:
            self._advance(batch, polled=False)
        return page, has_more

    def cancel(self, batch_id: str) -> Batch:
        batch = self._observe(batch_id, polled=False)
        with self.store.lock:
            if batch.status == ENDED:
                raise ApiError(400, f"Batch {batch_id} has already ended and cannot be canceled")
            cancel(batch, self.clock.now(), self.timing)
            self.store.save(batch)
            return batch

    def delete(self, batch_id: str) -> None:
        batch = self._observe(batch_id, polled=False)
        with self.store.lock:
            if batch.status != ENDED:
                raise ApiError(
                    400,
                    f"Batch {batch_id} cannot be deleted while its processing_status is "
                    f"{batch.status}; cancel it and wait for it to end first",
                )
            self.store.delete(batch_id)

    def results(self, batch_id: str) -> tuple[int, Iterator[bytes]]:
        """The number of result lines and an iterator over them (no newlines)."""
        batch = self._observe(batch_id, polled=False)
        with self.store.lock:
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
        batch = self.store.get(batch_id)
        self._advance(batch, polled=polled)
        return batch

    def _advance(self, batch: Batch, *, polled: bool) -> None:
        """Apply due transitions; one that ends the batch first waits for its items to be
        processed (never while holding the store lock, which processing needs)."""
        if not batch.ready.is_set() and ends_now(
            batch, self.clock.now(), self.timing, polled=polled
        ):
            batch.ready.wait()
        with self.store.lock:
            if advance(batch, self.clock.now(), self.timing, polled=polled):
                self.store.save(batch)

    # -- the test surface ------------------------------------------------------------

    def count_call(self, endpoint: str) -> None:
        """Count one API call (before it is answered, so a client sees it counted)."""
        with self._stats_lock:
            self._http_requests[endpoint] += 1
            self._calls_in_progress += 1

    def add_call_time(self, endpoint: str, seconds: float) -> None:
        """Add the time the emulator spent answering one call of `endpoint`."""
        with self._stats_lock:
            self._http_seconds[endpoint] = self._http_seconds.get(endpoint, 0.0) + seconds
            self._calls_in_progress -= 1

    def stats(self) -> dict[str, Any]:
        """Counters; waits for background processing so item fault counts are final."""
        self.processor.wait_idle()
        with self._stats_lock:
            return {
                "batches_created": self._batches_created,
                "requests_received": self._requests_received,
                "requests_by_custom_id": dict(self._by_custom_id),
                "faults_fired": self.faults.fired(),
                "batches": self.store.ids(),
                "http_requests": dict(self._http_requests),
                # API calls received and not yet answered (or dropped): a test that
                # killed clients waits for 0 before it reads the emulator's state
                "calls_in_progress": self._calls_in_progress,
                "http_seconds": {k: round(v, 6) for k, v in self._http_seconds.items()},
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
        self.processor.close()
        if self._state_file is not None:
            with self.store.lock:
                self._state_file.close()
