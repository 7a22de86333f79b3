"""The Dagster example, examples/orchestration/dagster/batch_enrich_job.py, run by
Dagster itself in-process (`execute_in_process` of the job its Definitions resolve, an
ephemeral instance) against the emulator and the example project on DuckDB: the ops
call the real `dbt` and `enrich` commands, and each documented exit code of `enrich
sync` ends in the outcome the example promises.

Cost (busy 2-core machine): per test one or two runs of real dbt builds and syncs
(~30-90 s each); see docs/orchestration.md.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.pipeline import Pipeline
from orchestration_support import ALL_ROWS, EXAMPLES, enriched_rows, load_example

from connector.emulator import EmulatorConfig, run_emulator

JOB_FILE = EXAMPLES / "dagster" / "batch_enrich_job.py"


class Run:
    """One run of the job: success, and per step its events and output metadata."""

    def __init__(self, result: Any) -> None:
        self.success: bool = result.success
        self.events: dict[str, list[str]] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, str] = {}
        for event in result.all_events:
            if event.step_key is None:
                continue
            self.events.setdefault(event.step_key, []).append(event.event_type_value)
            if event.is_successful_output:
                self.metadata[event.step_key] = {
                    key: value.value for key, value in event.step_output_data.metadata.items()
                }
            if event.is_step_failure:
                self.failures[event.step_key] = event.step_failure_data.error.message

    def retries(self, step: str) -> int:
        return self.events.get(step, []).count("STEP_UP_FOR_RETRY")


def run_job(sync_args: list[str] | None = None, op_selection: list[str] | None = None) -> Run:
    """Load the example file with the current environment and run its job once."""
    defs = load_example(JOB_FILE).defs
    job = defs.resolve_job_def("batch_enrich_loop")
    run_config = {"ops": {"enrich_sync": {"config": {"sync_args": sync_args or []}}}}
    result = job.execute_in_process(
        run_config=run_config, op_selection=op_selection, raise_on_error=False
    )
    return Run(result)


def test_a_budget_holds_rows_back_then_a_run_with_approval_enriches_every_row(
    pipeline: Pipeline,
) -> None:
    held = run_job(["--max-usd", "0.0001"])
    assert held.success, held.failures
    assert held.metadata["enrich_sync"] == {"exit_code": 4, "budget_held": True}
    assert "STEP_SUCCESS" in held.events["dbt_build_enriched"]
    assert enriched_rows(pipeline) < ALL_ROWS

    approved = run_job(["--approve-usd", "100"])
    assert approved.success, approved.failures
    assert approved.metadata["enrich_sync"] == {"exit_code": 0, "budget_held": False}
    assert enriched_rows(pipeline) == ALL_ROWS


def test_exit_1_requests_a_retry(
    pipeline: Pipeline,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # every create answers 500: the first try exits 1 (the create's outcome is
    # unknown); the retry finds the intent unresolved, within its grace, and exits 0
    emulator.set_faults("http_500@create=1")
    monkeypatch.setenv("ENRICH_SYNC_ARGS", "--select ticket_triage")
    run = run_job()
    assert run.success, run.failures
    assert run.retries("enrich_sync") == 1
    out, err = capfd.readouterr()
    assert "enrich sync exited 1: an error stopped part of the work" in out + err
    assert run.metadata["enrich_sync"] == {"exit_code": 0, "budget_held": False}
    assert "STEP_SUCCESS" in run.events["dbt_build_enriched"]


@pytest.mark.parametrize("exit_code", [2, 3])
def test_exit_2_and_3_fail_at_once_despite_the_retry_policy(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, exit_code: int
) -> None:
    if exit_code == 2:
        # a target the profile does not have; the first build is not needed to see it
        run = run_job(["--target", "no_such_target"], op_selection=["enrich_sync*"])
    else:
        # an API that takes another key answers 401 to the first submission
        with run_emulator(EmulatorConfig(api_key="sk-ant-the-only-valid-key")) as strict:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", strict.base_url)
            run = run_job()
    assert not run.success
    assert f"enrich sync exited {exit_code}: " in run.failures["enrich_sync"]
    assert run.retries("enrich_sync") == 0  # the op's RetryPolicy allows 2
    assert "STEP_SUCCESS" not in run.events.get("dbt_build_enriched", [])


@pytest.mark.usefixtures("held_file")
def test_exit_5_succeeds_without_output_and_skips_the_final_build(
    pipeline: Pipeline, capfd: pytest.CaptureFixture[str]
) -> None:
    # another process holds the DuckDB file, as a running sync does; the first build
    # could not open it either (DuckDB's own lock), so the run starts at the sync
    run = run_job(op_selection=["enrich_sync*"])
    assert run.success, run.failures
    assert run.events["enrich_sync"][-1] == "STEP_SUCCESS"
    assert "enrich_sync" not in run.metadata
    assert run.events["dbt_build_enriched"] == ["STEP_SKIPPED"]
    out, err = capfd.readouterr()
    assert "enrich sync exited 5: another sync holds the ledger" in out + err
