"""Running the emulator: in a background thread for tests and demos, or in the
foreground for `enrich emulator`."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from connector.emulator.config import EmulatorConfig
from connector.emulator.engine import Emulator
from connector.emulator.faults import FaultSpec
from connector.emulator.server import EmulatorHTTPServer


class EmulatorHandle:
    """A running emulator: its address and its test surface, in process."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.engine = Emulator(config)
        try:
            self.server = EmulatorHTTPServer((config.host, config.port), self.engine)
        except OSError:
            self.engine.close()
            raise
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """E.g. `http://127.0.0.1:54321`; give it to the SDK as `base_url`."""
        return self.server.base_url

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def state_file(self) -> Path | None:
        return self.config.state_file

    def stats(self) -> dict[str, Any]:
        """The same JSON as `GET /_emulator/stats`."""
        return self.engine.stats()

    def set_faults(self, spec: FaultSpec | str | Mapping[str, Any]) -> FaultSpec:
        """Replace the fault spec (a spec string, a FaultSpec or `{kind: p}`)."""
        return self.engine.set_faults(spec)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward; returns the total offset in seconds."""
        return self.engine.advance_clock(seconds)

    def start(self) -> EmulatorHandle:
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        try:
            self.server.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()
        self.engine.close()


@contextmanager
def run_emulator(config: EmulatorConfig | None = None) -> Iterator[EmulatorHandle]:
    """Start the emulator on `config.host` (default 127.0.0.1) and `config.port`
    (default 0: an ephemeral port) in a background thread; stop it on exit."""
    handle = EmulatorHandle(config or EmulatorConfig()).start()
    try:
        yield handle
    finally:
        handle.close()
