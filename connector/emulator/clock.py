"""The emulator's clock: wall time plus an offset that tests (or users) move forward."""

from __future__ import annotations

import threading
import time


class Clock:
    def __init__(self, offset: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = offset

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (never back); returns the new offset."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
            return self._offset
