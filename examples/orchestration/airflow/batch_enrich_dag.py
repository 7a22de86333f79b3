"""Airflow DAG: the batch-enrich loop (dbt build, enrich sync, dbt build) every 10 minutes.

Copy this file into your DAGs folder (Airflow 3; tested with 3.3). Each task runs the
`dbt` or `enrich` command of the environment the worker runs in (install dbt and
batch-enrich there, or set DBT and ENRICH to their full paths). `enrich sync`'s exit
codes (docs/running.md) become task states:

- 0 (done, or progress made): success.
- 1 (an error stopped part of the work): failed and retried (`retries`, `retry_delay`).
- 2 (usage or configuration), 3 (the API refused the account): failed at once, no
  retry (AirflowFailException).
- 4 (a budget held rows back; what fit was sent): success, returning budget_held=True
  (XCom); the final build runs.
- 5 (another sync holds the ledger): skipped (AirflowSkipException), and so is the
  final build.

Failing at once on 2 and 3 means the failure alert (email_on_failure,
on_failure_callback) fires on the first try rather than after the retries. A `dbt build`
that fails is retried like any task. `max_active_runs=1` keeps two runs of this DAG
from overlapping; exit 5 covers a sync started elsewhere (by hand, by cron).

Environment read when the DAG file is parsed (the same names as the cron example):
DBT_PROJECT_DIR (the dbt project, where the commands run; default: the current
directory), DBT_PROFILES_DIR (read by dbt and enrich themselves), DBT and ENRICH (the
commands), DBT_BUILD_ARGS (more arguments for both builds, e.g. "--target prod"),
ENRICH_SYNC_ARGS (more arguments for every sync, e.g. "--max-usd 20"),
ENRICH_RETRY_DELAY_SECONDS (default 300). A manual run may add sync arguments in its
conf, e.g. `{"sync_args": ["--approve-usd", "25"]}` to approve what a budget held back.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

log = logging.getLogger(__name__)

PROJECT_DIR = os.path.abspath(os.environ.get("DBT_PROJECT_DIR", "."))
DBT = shlex.split(os.environ.get("DBT", "dbt"))
ENRICH = shlex.split(os.environ.get("ENRICH", "enrich"))
DBT_BUILD_ARGS = shlex.split(os.environ.get("DBT_BUILD_ARGS", ""))
ENRICH_SYNC_ARGS = shlex.split(os.environ.get("ENRICH_SYNC_ARGS", ""))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("ENRICH_RETRY_DELAY_SECONDS", "300")))


def run(argv: list[str]) -> int:
    """Run a command in the project, its output going to the task log line by line."""
    log.info("running: %s (in %s)", shlex.join(argv), PROJECT_DIR)
    with subprocess.Popen(
        argv,
        cwd=PROJECT_DIR,
        env={**os.environ, "DBT_PROJECT_DIR": PROJECT_DIR},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("%s", line.rstrip("\n"))
    log.info("exit code %s", proc.returncode)
    return proc.returncode


def dbt_build() -> None:
    code = run([*DBT, "build", *DBT_BUILD_ARGS])
    if code != 0:
        raise AirflowException(f"dbt build exited {code}")


def enrich_sync(extra: list[str]) -> dict[str, Any]:
    """`enrich sync`, its exit code mapped to the task's state (the table above)."""
    code = run([*ENRICH, "sync", *ENRICH_SYNC_ARGS, *extra])
    if code == 0:
        return {"exit_code": 0, "budget_held": False}
    if code == 4:
        log.warning(
            "enrich sync exited 4: a budget held rows back (what fit was submitted); they "
            "go first next run, or trigger a run with conf "
            '{"sync_args": ["--approve-usd", "<dollars>"]}'
        )
        return {"exit_code": 4, "budget_held": True}
    if code == 5:
        raise AirflowSkipException(
            "enrich sync exited 5: another sync holds the ledger (or, on DuckDB, another "
            "process holds the file); it does the work, nothing was changed"
        )
    if code in (2, 3):
        what = "usage or configuration" if code == 2 else "the API refused the account"
        raise AirflowFailException(f"enrich sync exited {code}: {what}; retrying will not help")
    raise AirflowException(f"enrich sync exited {code}: an error stopped part of the work")


@dag(
    dag_id="batch_enrich_loop",
    schedule="*/10 * * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": RETRY_DELAY},
    params={
        "sync_args": Param(
            [], type="array", items={"type": "string"}, description="more enrich sync arguments"
        )
    },
    tags=["batch-enrich"],
)
def batch_enrich_loop() -> None:
    @task
    def dbt_build_flagged() -> None:
        """Flags rows (the <enrichment>__flagged views) and parses what landed."""
        dbt_build()

    @task
    def sync(**context: Any) -> dict[str, Any]:
        """Lands finished batches, then submits newly flagged rows."""
        return enrich_sync(list(context["params"]["sync_args"]))

    @task
    def dbt_build_enriched() -> None:
        """Builds what landed into the enriched tables."""
        dbt_build()

    dbt_build_flagged() >> sync() >> dbt_build_enriched()


batch_enrich_loop_dag = batch_enrich_loop()
