"""Helpers of the orchestration tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from harness.pipeline import REPO_ROOT, Pipeline

EXAMPLES = REPO_ROOT / "examples" / "orchestration"
BIN = Path(sys.executable).parent
# --max-wait: a hang guard for --wait only, generous for a busy machine
SYNC_WAIT = "--wait --poll-interval 0 --max-wait 900"
ALL_ROWS = 300 + 150  # the example tickets and reviews


def load_example(path: Path) -> ModuleType:
    """Import an example file afresh (it reads its environment when loaded)."""
    name = f"example_{path.stem}_{os.urandom(4).hex()}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def enriched_rows(pipeline: Pipeline) -> int:
    """Rows of the two example enrichments that have an output."""
    (tickets,) = pipeline.query(
        "select count(*) from analytics.ticket_triage__enriched where category is not null"
    )
    (reviews,) = pipeline.query(
        "select count(*) from analytics.review_aspects__enriched where batch_id is not null"
    )
    return int(tickets[0]) + int(reviews[0])
