"""Named step boundaries where a test can kill the process (SIGKILL, no cleanup).

Set BATCH_ENRICH_CRASH_AT=<name> to die at that boundary; used only by the crash-
safety tests, which prove that a rerun finishes the work without losing or
duplicating a row. Names: after_intent, before_create (the create is stamped
as started, not sent), after_create, mid_landing.
"""

from __future__ import annotations

import os
import signal

ENV = "BATCH_ENRICH_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
