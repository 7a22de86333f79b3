"""`enrich sync` in subprocesses, as a scheduler runs it, for the exactly-once and
chaos tests; and waiting on conditions (never on fixed wall time)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.enrich_project import KEY_TYPES
from harness.warehouses import Warehouse

# a hang guard only: generous, so that a busy machine never trips it
HANG_GUARD_SECONDS = 900.0


def sync_args(project: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "connector",
        "sync",
        "--project-dir",
        str(project),
        "--select",
        "items",
        "--poll-interval",
        "0",
        "--json",
        *extra,
    ]


def _env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BATCH_ENRICH_CRASH_AT", None)
    env.update(overrides or {})
    return env


def run_sync(
    project: Path, *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sync_args(project, *extra),
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )


def start_sync(project: Path, *extra: str, env: Mapping[str, str] | None = None) -> Any:
    return subprocess.Popen(
        sync_args(project, *extra),
        env=_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def items_source(warehouse: Warehouse, project: Path, rows: int) -> None:
    warehouse.create_source("items", [(i, f"item {i}") for i in range(rows)], KEY_TYPES["items"])
    warehouse.create_flagged_views(project, ["items"])


def landed_ids(warehouse: Warehouse, schema: str = "enrich") -> list[str]:
    return [c for (c,) in warehouse.fetch(f"select custom_id from {schema}.results_raw")]  # noqa: S608


def output(done: subprocess.CompletedProcess[str] | Any) -> str:
    return f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@dataclass
class InProcessResult:
    returncode: int
    stdout: str
    stderr: str


def run_sync_in_process(
    project: Path, *extra: str, env: Mapping[str, str] | None = None
) -> InProcessResult:
    """`enrich sync` through the real CLI, in this process (no interpreter start-up or
    imports per call): for tests whose syncs run one after another. Exit code, stdout
    (the --json document) and stderr as a subprocess would give them."""
    from click.testing import CliRunner

    from connector.cli import main

    result = CliRunner(env=dict(env or {})).invoke(main, sync_args(project, *extra)[3:])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return InProcessResult(result.exit_code, result.stdout, result.stderr)
