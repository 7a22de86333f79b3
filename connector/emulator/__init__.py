"""A Message Batches API emulator: `enrich emulator`, or `run_emulator()` in tests.

The connector core never imports this package; tests and the demo do.
"""

from connector.emulator.config import EmulatorConfig
from connector.emulator.faults import FaultSpec
from connector.emulator.runner import EmulatorHandle, run_emulator

__all__ = ["EmulatorConfig", "EmulatorHandle", "FaultSpec", "run_emulator"]
