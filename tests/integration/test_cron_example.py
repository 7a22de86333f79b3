"""The cron example, examples/orchestration/cron/enrich-loop.sh, run for real: bash and
flock, this venv's `dbt` and `enrich` CLIs, the example project on DuckDB, the emulator.

Two passes started together: exactly one takes the lock and runs the loop (dbt build,
enrich sync, dbt build), the other exits 0 having run nothing, and every row ends up
enriched. Then the script's handling of sync's exit codes 2 and 5, with a stand-in dbt
(the mapping needs no real build). Cost, on a busy 2-core machine: the overlap test
~60 s (two real dbt builds, one sync; ~35 s CPU); exit 2 (a bad target) ~8 s; exit 5
~20 s (the sync parses the project before it finds the file held).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.enrich_project import API_KEY
from harness.pipeline import REPO_ROOT, Pipeline, pipeline_in_env
from harness.sync_process import HANG_GUARD_SECONDS
from harness.warehouses import DUCKDB_FILE, DuckDBWarehouse

SCRIPT = REPO_ROOT / "examples" / "orchestration" / "cron" / "enrich-loop.sh"
BIN = Path(sys.executable).parent

# Stands in for `dbt` on the script's PATH: records which pass called it (its parent is
# the script's bash), waits until the test opens the gate, then runs the real command.
DBT_WRAPPER = """#!/usr/bin/env bash
echo "$PPID $*" >> "$CRON_TEST_CALLS"
while [ ! -e "$CRON_TEST_GATE" ]; do sleep 0.05; done
exec "$CRON_TEST_DBT" "$@"
"""

Starter = Callable[[dict[str, str]], subprocess.Popen[str]]

HOLD = """
import sys, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.close()
"""


@pytest.fixture
def pipeline(tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    warehouse = DuckDBWarehouse(tmp_path / DUCKDB_FILE)
    return pipeline_in_env(tmp_path, warehouse, emulator.base_url, API_KEY, monkeypatch)


def _env(pipeline: Pipeline, tmp_path: Path, real_dbt: str, sync_args: str) -> dict[str, str]:
    wrapper = tmp_path / "dbt-wrapper"
    wrapper.write_text(DBT_WRAPPER)
    wrapper.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DBT_PROJECT_DIR": str(pipeline.project),
        "DBT_PROFILES_DIR": str(pipeline.project),
        "DBT": str(wrapper),
        "DBT_BUILD_ARGS": "--exclude-resource-type unit_test",
        "ENRICH_SYNC_ARGS": sync_args,
        "CRON_TEST_CALLS": str(tmp_path / "dbt-calls"),
        "CRON_TEST_GATE": str(tmp_path / "gate"),
        "CRON_TEST_DBT": real_dbt,
    }


@pytest.fixture
def start() -> Iterator[Starter]:
    """Starts a pass in a session of its own; a pass still running when the test ends
    (it failed) is stopped with everything it started."""
    started: list[subprocess.Popen[str]] = []

    def _start(env: dict[str, str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(SCRIPT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=HANG_GUARD_SECONDS)  # a hang guard only


def _calls(tmp_path: Path) -> list[tuple[int, str]]:
    path = tmp_path / "dbt-calls"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(int(pid), args) for pid, args in (line.split(" ", 1) for line in lines)]


def test_two_overlapping_passes_one_runs_the_loop_and_the_rows_are_enriched(
    pipeline: Pipeline, tmp_path: Path, emulator: Any, start: Starter
) -> None:
    env = _env(
        pipeline, tmp_path, str(BIN / "dbt"), "--wait --poll-interval 0 --max-wait 900"
    )  # --max-wait: a hang guard for --wait only, generous for a busy machine
    passes = [start(env), start(env)]
    try:
        # the pass that holds the lock waits at the gate before its first dbt build, so
        # the other can only have exited on the lock; wait for that (a hang guard only)
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while all(p.poll() is None for p in passes):
            assert len({pid for pid, _ in _calls(tmp_path)}) < 2, "both passes started dbt"
            assert time.monotonic() < deadline, "neither pass exited"
            time.sleep(0.05)
        loser = next(p for p in passes if p.poll() is not None)
        winner = next(p for p in passes if p is not loser)
        lost_output = loser.communicate()[0]
        assert loser.returncode == 0, lost_output
        assert "another pass holds" in lost_output and "nothing run" in lost_output
        assert winner.poll() is None, "the pass with the lock ended before the gate opened"
    finally:
        (tmp_path / "gate").touch()
    output = winner.communicate(timeout=HANG_GUARD_SECONDS)[0]  # a hang guard only
    assert winner.returncode == 0, output

    # only the winner ran dbt, twice (before and after the sync); the loser ran nothing
    calls = _calls(tmp_path)
    assert [pid for pid, _ in calls] == [winner.pid, winner.pid], calls
    assert "enrich sync: done" in output
    # every row enriched, from one batch per enrichment
    assert emulator.stats()["batches_created"] == 2
    assert pipeline.query(
        "select count(*) from analytics.ticket_triage__enriched where category is not null"
    ) == [(300,)]
    assert pipeline.query(
        "select count(*) from analytics.review_aspects__enriched where batch_id is not null"
    ) == [(150,)]


@pytest.fixture
def held_file(pipeline: Pipeline) -> Iterator[None]:
    """Another process holding the DuckDB file, as a running `enrich sync` does."""
    warehouse = pipeline.warehouse
    assert isinstance(warehouse, DuckDBWarehouse)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(warehouse.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=HANG_GUARD_SECONDS)  # a hang guard: it exits once stdin closes


@pytest.mark.parametrize(
    ("case", "sync_args", "exit_code", "says"),
    [
        ("configuration", "--target no_such_target", 2, "retrying will not help"),
        ("busy", "", 0, "another sync holds the ledger"),
    ],
)
def test_sync_exit_codes_decide_the_second_build_and_the_pass_exit_code(
    pipeline: Pipeline,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    start: Starter,
    case: str,
    sync_args: str,
    exit_code: int,
    says: str,
) -> None:
    if case == "busy":
        request.getfixturevalue("held_file")
    # a dbt that does nothing: the exit codes come from the real `enrich sync`
    env = _env(pipeline, tmp_path, "true", sync_args)
    (tmp_path / "gate").touch()
    proc = start(env)
    output = proc.communicate(timeout=HANG_GUARD_SECONDS)[0]  # a hang guard only
    assert proc.returncode == exit_code, output
    assert says in output
    assert f"enrich sync exited {2 if case == 'configuration' else 5}" in output
    # the first build ran, the second did not (nothing landed)
    assert [args for _, args in _calls(tmp_path)] == ["build --exclude-resource-type unit_test"]
