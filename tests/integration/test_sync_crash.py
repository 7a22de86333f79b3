"""Crash safety: `enrich sync` SIGKILLed at each step boundary, then run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import KEY_TYPES
from harness.received import row_requests
from harness.sync_process import HANG_GUARD_SECONDS
from harness.warehouses import Warehouse

ROWS = 300


def _enrich(project: Path, crash_at: str | None, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("BATCH_ENRICH_CRASH_AT", None)
    if crash_at:
        env["BATCH_ENRICH_CRASH_AT"] = crash_at
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "sync",
            "--project-dir",
            str(project),
            "--select",
            "items",
            "--wait",
            "--poll-interval",
            "0",
            "--reconcile-grace",
            "0",
            "--max-wait",  # a hang guard for --wait, generous for a busy machine
            str(HANG_GUARD_SECONDS),
            "--json",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,  # a hang guard only
    )


@pytest.mark.parametrize("crash_at", ["after_intent", "after_create", "mid_landing"])
def test_killed_sync_resumes_without_loss_or_duplicates(
    crash_at: str, enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])

    killed = _enrich(enrich_project, crash_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    again = _enrich(enrich_project, None)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]

    lines = enrich_env.fetch("select custom_id from enrich.results_raw")
    assert sorted(int(c) for (c,) in lines) == list(range(ROWS))  # all landed, none twice
    received = row_requests(emulator.stats())
    assert set(received) == {str(i) for i in range(ROWS)}
    # no row submitted twice: the orphan batch (if any) was adopted, not duplicated
    assert max(received.values()) == 1, received.most_common(3)
    statuses = Counter(s for (s,) in enrich_env.fetch("select status from enrich.batches"))
    if crash_at == "after_intent":
        assert statuses["abandoned"] == 1  # the intent never reached the API
    if crash_at == "after_create":
        notes = enrich_env.fetch("select note from enrich.batches where note is not null")
        assert any("adopted" in n for (n,) in notes)
    assert statuses["landed"] >= 1


def test_create_that_commits_but_never_answers_is_adopted_not_duplicated(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any
) -> None:
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    emulator.set_faults("create_no_answer=1.0,seed=3")
    first = _enrich(enrich_project, None)
    assert first.returncode in (0, 1), first.stderr[-2000:]
    emulator.set_faults("")
    second = _enrich(enrich_project, None)
    assert second.returncode == 0, second.stderr[-2000:]

    assert emulator.stats()["faults_fired"].get("create_no_answer", 0) >= 1
    received = row_requests(emulator.stats())
    assert len(received) == ROWS and max(received.values()) == 1
    lines = enrich_env.fetch("select count(*) from enrich.results_raw")
    assert lines[0][0] == ROWS
