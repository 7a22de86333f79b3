"""Background processing: each batch's items become result lines on one worker thread,
in creation order, after the create call has been answered (as with the real API).

The worker gives way to create calls: while one runs (`Processor.giving_way`), it waits
between items. Parsing a create's body and processing an earlier batch's items both
need the interpreter lock, so without this a create took longer the more batches were
still being processed (1.7 s for a lone batch of 100,000, about 5 s each over ten); the
API's create does not depend on how much of its backlog is still processing.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.emulator.gc_pause import gc_paused
from connector.emulator.outputs import ERRORED, BatchContext, ItemResult, errored_line, process_item
from connector.emulator.state import Batch

Finish = Callable[[Batch, list[ItemResult]], None]
_BULK_ITEMS = 10_000
_ITEMS_BETWEEN_TURNS = 500  # how often the worker checks whether to give way


def process_batch(
    batch: Batch, context: BatchContext, turn: Callable[[], None] = lambda: None
) -> list[ItemResult]:
    """Every item's result. A bug in the emulator fails the item, not the batch.
    `turn` is called every few hundred items (the worker gives way there)."""
    results: list[ItemResult] = []
    for index, (custom_id, params) in enumerate(
        zip(batch.custom_ids, batch.pending or [], strict=True)
    ):
        if index % _ITEMS_BETWEEN_TURNS == 0:
            turn()
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
        self._calls = 0  # create calls running, which the worker gives way to
        self._calls_done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="emulator-processor", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch, context: BatchContext) -> None:
        self._queue.put((batch, context))

    @contextmanager
    def giving_way(self) -> Iterator[None]:
        """While this block runs, the worker waits between items (create calls)."""
        with self._calls_done:
            self._calls += 1
        try:
            yield
        finally:
            with self._calls_done:
                self._calls -= 1
                self._calls_done.notify_all()

    def _turn(self) -> None:
        with self._calls_done:
            self._calls_done.wait_for(lambda: self._calls == 0)

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
                    self._finish(batch, process_batch(batch, context, self._turn))
            except Exception as error:  # keep the worker alive for the next batch
                sys.stderr.write(f"emulator: processing failed: {error!r}\n")
            finally:
                self._queue.task_done()
