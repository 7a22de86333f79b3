"""DuckDB landing spools result parts beside the database; a sync SIGKILLed mid-landing
leaves its spool behind, and the next sync removes it (nothing in the system temp dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import KEY_TYPES
from harness.sync_process import HANG_GUARD_SECONDS  # a hang guard only
from harness.warehouses import DuckDBWarehouse, Warehouse

from connector.ledger.duckdb import spool_root

ROWS = 200


def _enrich(project: Path, tmpdir: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TMPDIR=str(tmpdir))
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
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )


def _ours(tmpdir: Path) -> list[str]:
    """What batch-enrich left in the (private) system temp dir."""
    return sorted(p.name for p in tmpdir.iterdir() if "batch-enrich" in p.name)


@pytest.mark.parametrize("warehouse_kind", ["duckdb"], indirect=True)
def test_spool_left_by_a_sync_killed_mid_landing_is_removed_by_the_next(
    enrich_env: Warehouse, enrich_project: Path, emulator: Any, tmp_path: Path
) -> None:
    assert isinstance(enrich_env, DuckDBWarehouse)
    enrich_env.create_source("items", [(i, f"item {i}") for i in range(ROWS)], KEY_TYPES["items"])
    enrich_env.create_flagged_views(enrich_project, ["items"])
    tmpdir = tmp_path / "system-tmp"
    tmpdir.mkdir()
    spool = spool_root(enrich_env.path)

    killed = _enrich(enrich_project, tmpdir, "mid_landing")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # the killed landing's parts are where the next sync will look: beside the database
    left = [p.name for p in spool.iterdir()]
    assert len(left) == 1 and left[0].startswith("land-"), left
    assert any(spool.joinpath(left[0]).iterdir())  # a part was being written
    assert _ours(tmpdir) == []

    again = _enrich(enrich_project, tmpdir, None)

    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert enrich_env.fetch("select count(*) from enrich.results_raw")[0][0] == ROWS
    assert not spool.exists()  # the stale folder, and then the empty root, are gone
    assert _ours(tmpdir) == []
