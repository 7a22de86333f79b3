"""The example project, copied so a test may edit seeds and declarations, run through
the real loop: `dbt build` (in-process), `enrich sync --wait` (in-process), `dbt build`."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from connector.dbt_invoke import run_dbt
from connector.settings import Settings
from connector.sync import SyncReport, sync
from harness.warehouses import Warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]
COPIED = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")


def pipeline_in_env(
    root: Path, warehouse: Warehouse, base_url: str, api_key: str, monkeypatch: Any
) -> Pipeline:
    """A copied example project whose dbt and connector talk to `warehouse` and to the
    emulator at `base_url` (the environment is set through pytest's `monkeypatch`)."""
    for key, value in warehouse.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", api_key)
    monkeypatch.setenv("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return Pipeline(root, warehouse)


# dbt's built-in generic tests on single columns
COLUMN_TESTS = ("not_null", "unique", "accepted_values", "relationships")


class Pipeline:
    """`warehouse` is where dbt and the connector write (tests/harness/warehouses.py);
    inspection queries are written once, in the Postgres dialect."""

    def __init__(self, root: Path, warehouse: Warehouse) -> None:
        self.project = root / "project"
        self.warehouse = warehouse
        self.target = warehouse.kind
        for name in COPIED:
            src = REPO_ROOT / name
            dst = self.project / name
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)

    # --- the loop
    def build(self, *, unit_tests: bool = False, column_tests: bool = True) -> None:
        """`dbt build`; the package's unit tests only when asked (they do not depend on
        the data, and one build per warehouse that runs them is enough). Without
        `column_tests`, dbt's built-in column tests (not_null, unique, accepted_values,
        relationships: 85 of the example project's 133 nodes) are left out; the grain,
        reconciliation and budget tests still run."""
        skip = [] if unit_tests else ["--exclude-resource-type", "unit_test"]
        if not column_tests:
            skip += ["--exclude", *(f"test_name:{name}" for name in COLUMN_TESTS)]
        run_dbt(["build", *skip], self.project, self.project, self.target)

    def dbt(self, *args: str) -> None:
        """Any other dbt command (a test that needs less than a whole build)."""
        run_dbt(list(args), self.project, self.project, self.target)

    def sync(self, *select: str) -> SyncReport:
        settings = Settings(
            project_dir=self.project, profiles_dir=self.project, target=self.target,
            select=select, wait=True, poll_interval=0.0, reconcile_grace_seconds=0.0,
            max_wait_seconds=900.0,  # a hang guard for --wait, generous for a busy machine
        )  # fmt: skip
        report = sync(settings)
        assert not report.errors, report.errors
        return report

    def cycle(self, *select: str, column_tests: bool = True) -> SyncReport:
        """A sync and the build after it (see `build` for `column_tests`)."""
        report = self.sync(*select)
        self.build(column_tests=column_tests)
        return report

    # --- inspecting the warehouse
    def query(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.warehouse.fetch(text, params)

    def flagged(self, enrichment: str) -> dict[str, str]:
        """key (as text) -> flag_reason of the enrichment's flagged view."""
        key = (
            "cast(ticket_id as text)"
            if enrichment == "ticket_triage"
            else "product_id || '/' || cast(review_id as text)"
        )
        rows = self.query(
            f"select {key}, flag_reason from analytics.{enrichment}__flagged"  # noqa: S608
        )
        return dict(rows)

    # --- editing the project, as a user would
    def edit_seed_row(self, seed: str, key_column: str, key: str, column: str, value: str) -> None:
        path = self.project / "seeds" / "examples" / f"{seed}.csv"
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        fields = list(rows[0])
        hits = [r for r in rows if r[key_column] == key]
        assert len(hits) == 1, f"{seed}: no single row {key_column}={key}"
        hits[0][column] = value
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def edit_declaration(self, enrichment: str, **changes: Any) -> None:
        path = self.project / "models" / "examples" / "_examples.yml"
        doc = yaml.safe_load(path.read_text())
        model = next(m for m in doc["models"] if m["name"] == enrichment)
        model["config"]["meta"]["enrich"].update(changes)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def prices(self) -> Mapping[str, dict[str, float]]:
        path = self.project / "seeds" / "batch_enrich_model_prices.csv"
        with path.open(newline="") as f:
            return {
                r["model"]: {k: float(v) for k, v in r.items() if k != "model"}
                for r in csv.DictReader(f)
            }
