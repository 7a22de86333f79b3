"""The Airflow example, examples/orchestration/airflow/batch_enrich_dag.py, run by
Airflow itself in-process (`dag.test()`, a SQLite metadata database in a temp
AIRFLOW_HOME, the DAGs folder being the example's) against the emulator and the example
project on DuckDB: the tasks call the real `dbt` and `enrich` commands, and each
documented exit code of `enrich sync` ends in the task state the example promises.

Cost (busy 2-core machine): `airflow db migrate` once (~10 s), then per test one or two
DAG runs of real dbt builds and syncs (~30-90 s each); see docs/orchestration.md.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.pipeline import Pipeline
from harness.sync_process import HANG_GUARD_SECONDS
from orchestration_support import ALL_ROWS, BIN, EXAMPLES, enriched_rows, load_example

from connector.emulator import EmulatorConfig, run_emulator

DAG_FILE = EXAMPLES / "airflow" / "batch_enrich_dag.py"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private AIRFLOW_HOME whose DAGs folder is the example's; set before Airflow is
    first imported (it reads its configuration then)."""
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAG_FILE.parent))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        out = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,  # a hang guard only
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        yield home


class Run:
    """One DAG run: its state, and per task its state, try number and returned value."""

    def __init__(self, dag_run: Any) -> None:
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        self.state = str(dag_run.state)
        self.tasks: dict[str, tuple[str, int]] = {}
        self.returned: dict[str, Any] = {}
        with create_session() as session:
            for ti in session.scalars(
                select(TaskInstance).where(TaskInstance.run_id == dag_run.run_id)
            ):
                self.tasks[ti.task_id] = (str(ti.state), ti.try_number)
            for xcom in session.scalars(
                select(XComModel).where(
                    XComModel.run_id == dag_run.run_id, XComModel.key == "return_value"
                )
            ):
                self.returned[xcom.task_id] = XComModel.deserialize_value(xcom)


def run_dag(**test_args: Any) -> Run:
    """Load the example DAG file with the current environment and run it once."""
    dag = load_example(DAG_FILE).batch_enrich_loop_dag
    return Run(dag.test(**test_args))


def logged(capfd: pytest.CaptureFixture[str]) -> str:
    """What the tasks logged (dag.test() logs to the process's stdout and stderr)."""
    out, err = capfd.readouterr()
    return out + err


@pytest.fixture
def env(airflow_home: Path, pipeline: Pipeline) -> Pipeline:
    return pipeline


def test_a_budget_holds_rows_back_then_a_run_with_approval_enriches_every_row(
    env: Pipeline,
) -> None:
    held = run_dag(run_conf={"sync_args": ["--max-usd", "0.0001"]})
    assert held.state == "success", held.tasks
    assert held.tasks == {
        "dbt_build_flagged": ("success", 1),
        "sync": ("success", 1),
        "dbt_build_enriched": ("success", 1),
    }
    assert held.returned["sync"] == {"exit_code": 4, "budget_held": True}
    assert enriched_rows(env) < ALL_ROWS

    approved = run_dag(run_conf={"sync_args": ["--approve-usd", "100"]})
    assert approved.state == "success", approved.tasks
    assert approved.returned["sync"] == {"exit_code": 0, "budget_held": False}
    assert enriched_rows(env) == ALL_ROWS


def test_exit_1_is_retried(
    env: Pipeline,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # every create answers 500: the first try exits 1 (the create's outcome is
    # unknown); the retry finds the intent unresolved, within its grace, and exits 0
    emulator.set_faults("http_500@create=1")
    monkeypatch.setenv("ENRICH_SYNC_ARGS", "--select ticket_triage")
    run = run_dag()
    assert run.tasks["sync"] == ("success", 2), run.tasks
    assert "enrich sync exited 1: an error stopped part of the work" in logged(capfd)
    assert run.state == "success"
    assert run.tasks["dbt_build_enriched"] == ("success", 1)


@pytest.mark.parametrize("exit_code", [2, 3])
def test_exit_2_and_3_fail_at_once_without_retry(
    env: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    exit_code: int,
) -> None:
    if exit_code == 2:
        # a target the profile does not have; the first build is not needed to see it
        run = run_dag(
            run_conf={"sync_args": ["--target", "no_such_target"]},
            mark_success_pattern="dbt_build_flagged",
        )
    else:
        # an API that takes another key answers 401 to the first submission
        with run_emulator(EmulatorConfig(api_key="sk-ant-the-only-valid-key")) as strict:
            monkeypatch.setenv("ANTHROPIC_BASE_URL", strict.base_url)
            run = run_dag()
    assert run.state == "failed"
    assert run.tasks["sync"] == ("failed", 1), run.tasks  # retries=2, none used
    assert f"enrich sync exited {exit_code}: " in logged(capfd)
    assert run.tasks["dbt_build_enriched"][0] == "upstream_failed"


@pytest.mark.usefixtures("held_file")
def test_exit_5_skips_the_sync_and_the_final_build(
    env: Pipeline, capfd: pytest.CaptureFixture[str]
) -> None:
    # another process holds the DuckDB file, as a running sync does; the first build
    # could not open it either (DuckDB's own lock), so it is marked done here
    run = run_dag(mark_success_pattern="dbt_build_flagged")
    assert run.tasks["sync"] == ("skipped", 1), run.tasks
    assert "enrich sync exited 5: another sync holds the ledger" in logged(capfd)
    assert run.tasks["dbt_build_enriched"][0] == "skipped"
    assert run.state == "success"
