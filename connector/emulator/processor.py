"""Background processing: each batch's items become result lines on one worker thread,
in creation order, after the create call has been answered (as with the real API)."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable

from connector.emulator.gc_pause import gc_paused
from connector.emulator.outputs import ERRORED, BatchContext, ItemResult, errored_line, process_item
from connector.emulator.state import Batch

Finish = Callable[[Batch, list[ItemResult]], None]
_BULK_ITEMS = 10_000


def process_batch(batch: Batch, context: BatchContext) -> list[ItemResult]:
    """Every item's result. A bug in the emulator fails the item, not the batch."""
    results: list[ItemResult] = []
    for custom_id, params in zip(batch.custom_ids, batch.pending or [], strict=True):
        try:
            results.append(process_item(context, custom_id, params))
        except Exception as error:
            sys.stderr.write(f"emulator: failed to process {custom_id}: {error!r}\n")
            line = errored_line(custom_id, "api_error", "Emulator internal error", None)
            results.append(ItemResult(line, ERRORED))
    return results


class Processor:
    def __init__(self, finish: Finish) -> None:
        self._finish = finish
        self._queue: queue.Queue[tuple[Batch, BatchContext] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="emulator-processor", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch, context: BatchContext) -> None:
        self._queue.put((batch, context))

    def wait_idle(self) -> None:
        """Return once every submitted batch has been processed."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                batch, context = job
                with gc_paused(batch.size >= _BULK_ITEMS):
                    self._finish(batch, process_batch(batch, context))
            except Exception as error:  # keep the worker alive for the next batch
                sys.stderr.write(f"emulator: processing failed: {error!r}\n")
            finally:
                self._queue.task_done()
