"""The house rules hold on every run: ruff and `mypy --strict` clean on connector/,
ruff clean on tests and benchmarks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# a hang guard for the linters (mypy and the sqlfluff dbt templater are slow on a busy
# machine): generous, never a timing check
HANG_GUARD_SECONDS = 1800


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS
    )


def test_ruff_lint_is_clean() -> None:
    out = _run(str(BIN / "ruff"), "check", "connector", "tests", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_is_clean() -> None:
    out = _run(str(BIN / "ruff"), "format", "--check", "connector", "tests", "bench")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean_on_the_connector() -> None:
    out = _run(str(BIN / "mypy"), "--strict", "connector")
    assert out.returncode == 0, out.stdout + out.stderr


def test_sqlfluff_is_clean_on_models_and_macros(tmp_path: Path) -> None:
    # the dbt templater compiles the project; the DuckDB target needs no server
    env = {
        **os.environ,
        "BATCH_ENRICH_TARGET": "duckdb",
        "BATCH_ENRICH_DUCKDB_PATH": str(tmp_path / "lint.duckdb"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    out = subprocess.run(
        [str(BIN / "sqlfluff"), "lint", "models", "macros", "--nocolor"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
