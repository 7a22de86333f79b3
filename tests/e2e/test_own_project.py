"""Acceptance of issue 14: a user's own dbt project, not this repository.

A separate project in a temp dir installs the package through packages.yml (a `local:`
entry, `dbt deps`) and uses the `enrich` CLI from this checkout (subprocesses, as a user
runs it). It has one source table of 50 rows with a composite key whose values are not
allowed in a custom_id, scaffolds an enrichment with `enrich init`, runs `enrich run` to
completion against the emulator, and then finds every row enriched, and none of the
package's examples, example seeds or own unit tests in its manifest.

Cost: one project per warehouse (Postgres, DuckDB): dbt deps, two CLI subprocesses,
three dbt builds; about half a minute each on an idle machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness.pipeline import REPO_ROOT
from harness.postgres import PgDatabase
from harness.warehouses import DUCKDB_FILE, KINDS, DuckDBWarehouse, PostgresWarehouse, Warehouse

from connector.dbt_invoke import run_dbt

ROWS = 50
# a hang guard only (the run itself takes seconds): generous for a busy machine
HANG_GUARD_SECONDS = 900

PROJECT = """\
name: shop
version: "1.0.0"
config-version: 2
profile: shop
"""
SOURCES = """\
sources:
  - name: app
    schema: app
    tables:
      - name: pkgs_src
"""
STAGING = """\
select name, version, prompt as description from {{ source('app', 'pkgs_src') }}
"""
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["label", "score"],
}


def _rows() -> list[tuple[str, str, str]]:
    # '+', ':', '~' and '/' are not allowed in a custom_id: the key must round-trip
    return [
        (f"lib{i % 7}+c/{i}", f"1:{i}.0~rc{i % 3}", f"package {i}: does things")
        for i in range(ROWS)
    ]


def _write_project(root: Path) -> Path:
    project = root / "shop"
    (project / "models" / "staging").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(PROJECT)
    (project / "packages.yml").write_text(f"packages:\n  - local: {REPO_ROOT}\n")
    # the repository's profile, renamed: every value from the environment
    profile = (REPO_ROOT / "profiles.yml").read_text().replace("batch_enrich:", "shop:", 1)
    (project / "profiles.yml").write_text(profile)
    (project / "models" / "staging" / "_sources.yml").write_text(SOURCES)
    (project / "models" / "staging" / "stg_pkgs.sql").write_text(STAGING)
    (project / "label_schema.json").write_text(json.dumps(OUTPUT_SCHEMA))
    return project


def _enrich(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args, "--project-dir", str(project)],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_own_project_installs_scaffolds_and_runs_to_completion(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse: Warehouse
    if kind == "postgres":
        db: PgDatabase = request.getfixturevalue("pg_db")
        warehouse = PostgresWarehouse(db)
    else:
        warehouse = DuckDBWarehouse(tmp_path / DUCKDB_FILE)
    env = {
        **os.environ,
        **warehouse.env,
        "ANTHROPIC_BASE_URL": emulator.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-own-project",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    project = _write_project(tmp_path)
    warehouse.create_source("pkgs", _rows(), key_types=(("name", "text"), ("version", "text")))
    run_dbt(["deps"], project, project, None)

    init = _enrich(
        project,
        env,
        "init",
        "pkg_labels",
        "--from",
        "stg_pkgs",
        "--key",
        "name,version",
        "--output-schema",
        "label_schema.json",
    )
    assert init.returncode == 0, init.stderr
    folder = project / "models" / "enrichments" / "pkg_labels"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_pkg_labels.yml",
        "pkg_labels.sql",
        "pkg_labels__enriched.sql",
        "pkg_labels__flagged.sql",
    ]
    assert "enrich run" in init.stdout

    run = _enrich(
        project,
        env,
        "run",
        "--poll-interval",
        "0",
        "--reconcile-grace",
        "0",
        "--max-wait",
        str(HANG_GUARD_SECONDS),
        "--json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning:" not in run.stderr  # the package and the CLI are the same release
    report = json.loads(run.stdout)
    assert report["done"] is True
    assert report["submitted"] == ROWS
    assert report["in_flight"] == 0

    enriched = warehouse.fetch(
        "select name, version, label, score from analytics.pkg_labels__enriched"
    )
    assert len(enriched) == ROWS
    assert {(n, v) for n, v, _, _ in enriched} == {(n, v) for n, v, _ in _rows()}
    assert all(label is not None and score is not None for _, _, label, score in enriched)

    manifest = json.loads((project / "target" / "manifest.json").read_text())
    enabled = [n for n in manifest["nodes"].values() if n["config"].get("enabled", True)]
    from_examples = [
        n["unique_id"]
        for n in enabled
        if n["resource_type"] in ("model", "seed")
        and n["original_file_path"].startswith(("models/examples/", "seeds/examples/"))
    ]
    assert from_examples == []
    assert not [n for n in enabled if n["name"] in ("ticket_triage", "review_aspects")]
    package_unit_tests = [
        u["unique_id"]
        for u in manifest["unit_tests"].values()
        if u["package_name"] == "batch_enrich"
    ]
    assert package_unit_tests == []
    package_generic_tests = [
        n["unique_id"]
        for n in enabled
        if n["resource_type"] == "test"
        and n["package_name"] == "batch_enrich"
        and n["original_file_path"].startswith(("models/staging/", "models/intermediate/"))
    ]
    assert package_generic_tests == []


@pytest.mark.slow
def test_a_budget_stop_ends_submission_for_the_run_and_exits_4(
    tmp_path: Path, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `enrich run` is one command for budgets: the pass a budget held back is the
    last that submits; the run lands what it sent and stops with the budget (exit 4)
    instead of sending another budget's worth every pass. DuckDB only, in-process."""
    from connector.run import run
    from connector.scaffold import InitRequest, init
    from connector.settings import Settings

    warehouse = DuckDBWarehouse(tmp_path / DUCKDB_FILE)
    for key, value in {
        **warehouse.env,
        "ANTHROPIC_BASE_URL": emulator.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-own-project",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    project = _write_project(tmp_path)
    rows = _rows()[:20]
    warehouse.create_source("pkgs", rows, key_types=(("name", "text"), ("version", "text")))
    run_dbt(["deps"], project, project, None)
    folder = init(InitRequest("pkg_labels", "stg_pkgs", ("name", "version"), project)).folder
    declaration = folder / "_pkg_labels.yml"
    # about three rows' estimate (half of max_tokens out at Haiku's batch price)
    text = declaration.read_text()
    budget = "prompt_version: v1\n          budget_usd: 0.004"
    declaration.write_text(text.replace("prompt_version: v1", budget))

    report = run(
        Settings(
            project_dir=project,
            profiles_dir=project,
            poll_interval=0.0,
            reconcile_grace_seconds=0.0,
            max_wait_seconds=HANG_GUARD_SECONDS,
        )
    )
    assert [s.enrichment for s in report.budget_stops] == ["pkg_labels"]
    assert 0 < report.submitted < len(rows)
    assert report.in_flight == 0 and not report.done and not report.errors
    # the marker request of each batch (custom_id be-sub-...) is not a row
    ((sent,),) = warehouse.fetch(
        "select count(*) from enrich.requests where custom_id not like 'be-sub-%'"
    )
    assert sent == report.submitted  # no pass after the stop sent anything
    ((landed,),) = warehouse.fetch(
        "select count(*) from enrich.results_raw where custom_id not like 'be-sub-%'"
    )
    assert landed == report.submitted  # and what was sent was landed before the exit
