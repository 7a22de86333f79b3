"""Dagster job: the batch-enrich loop (dbt build, enrich sync, dbt build) every 10 minutes.

Load it as a code location (`dagster dev -f batch_enrich_job.py`, or import `defs` from
your own definitions; tested with Dagster 1.13). Each op runs the `dbt` or `enrich`
command of the environment the code location runs in. `enrich sync`'s exit codes
(docs/running.md) become Dagster outcomes:

- 0 (done, or progress made): success; output metadata exit_code=0.
- 1 (an error stopped part of the work): RetryRequested, up to 2 retries
  `retry_delay_seconds` apart.
- 2 (usage or configuration), 3 (the API refused the account):
  Failure(allow_retries=False), failed at once.
- 4 (a budget held rows back; what fit was sent): success; output metadata
  exit_code=4, budget_held=true; the final build runs.
- 5 (another sync holds the ledger): success without an output, so the final build is
  skipped.

Every op also carries a RetryPolicy (a failed `dbt build`, an unexpected error);
`Failure(allow_retries=False)` bypasses it, so a run-failure sensor or alert policy
fires on the first try for 2 and 3. Dagster does not stop two runs of one job from
overlapping by itself: give the job's tag a limit of 1 in the instance's run queue
(`run_queue: tag_concurrency_limits: [{key: batch-enrich, limit: 1}]` in
dagster.yaml); exit 5 covers a sync started elsewhere.

Configuration: the EnrichProject resource, set below from the environment (the same
names as the cron and Airflow examples): DBT_PROJECT_DIR (the dbt project, where the
commands run), DBT and ENRICH (the commands), DBT_BUILD_ARGS, ENRICH_SYNC_ARGS,
ENRICH_RETRY_DELAY_SECONDS (default 300). DBT_PROFILES_DIR is read by dbt and enrich
themselves. A run may add sync arguments in its run config, e.g. to approve what a
budget held back: {"ops": {"enrich_sync": {"config": {"sync_args": ["--approve-usd",
"25"]}}}}.
"""

# no `from __future__ import annotations`: Dagster reads the annotations as types
import os
import shlex
import subprocess
from collections.abc import Iterator
from typing import Any

from dagster import (
    Config,
    ConfigurableResource,
    Definitions,
    Failure,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    RetryRequested,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

RETRIES = 2


class EnrichProject(ConfigurableResource):
    """Where the dbt project is and how to call dbt and enrich."""

    project_dir: str
    dbt: list[str] = Field(default_factory=lambda: ["dbt"])
    enrich: list[str] = Field(default_factory=lambda: ["enrich"])
    dbt_build_args: list[str] = Field(default_factory=list)
    sync_args: list[str] = Field(default_factory=list)
    retry_delay_seconds: float = 300.0

    def run(self, context: OpExecutionContext, argv: list[str]) -> int:
        """Run a command in the project, its output going to the op's log line by line."""
        project = os.path.abspath(self.project_dir)
        context.log.info(f"running: {shlex.join(argv)} (in {project})")
        with subprocess.Popen(
            argv,
            cwd=project,
            env={**os.environ, "DBT_PROJECT_DIR": project},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                context.log.info(line.rstrip("\n"))
        return proc.returncode

    def dbt_build(self, context: OpExecutionContext) -> None:
        code = self.run(context, [*self.dbt, "build", *self.dbt_build_args])
        if code != 0:
            raise Failure(f"dbt build exited {code}", metadata={"exit_code": code})


class SyncConfig(Config):
    sync_args: list[str] = Field(default_factory=list)


def _retry_policy() -> RetryPolicy:
    delay = float(os.environ.get("ENRICH_RETRY_DELAY_SECONDS", "300"))
    return RetryPolicy(max_retries=RETRIES, delay=delay)


@op(out=Out(Nothing), retry_policy=_retry_policy())
def dbt_build_flagged(context: OpExecutionContext, enrich_project: EnrichProject) -> None:
    """Flags rows (the <enrichment>__flagged views) and parses what landed."""
    enrich_project.dbt_build(context)


@op(
    ins={"flagged": In(Nothing)},
    out=Out(Nothing, is_required=False),
    retry_policy=_retry_policy(),
)
def enrich_sync(
    context: OpExecutionContext, config: SyncConfig, enrich_project: EnrichProject
) -> Iterator[Output[Any]]:
    """Lands finished batches, then submits newly flagged rows; the exit code mapped
    to the op's outcome (the table above)."""
    argv = [*enrich_project.enrich, "sync", *enrich_project.sync_args, *config.sync_args]
    code = enrich_project.run(context, argv)
    if code in (0, 4):
        if code == 4:
            context.log.warning(
                "enrich sync exited 4: a budget held rows back (what fit was submitted); "
                "they go first next run, or approve with --approve-usd in the run config"
            )
        yield Output(None, metadata={"exit_code": code, "budget_held": code == 4})
    elif code == 5:
        # no output: the final build is skipped (on DuckDB the other process holds the file)
        context.log.warning(
            "enrich sync exited 5: another sync holds the ledger (or, on DuckDB, another "
            "process holds the file); it does the work, nothing was changed"
        )
    elif code in (2, 3):
        what = "usage or configuration" if code == 2 else "the API refused the account"
        raise Failure(
            f"enrich sync exited {code}: {what}; retrying will not help",
            metadata={"exit_code": code},
            allow_retries=False,
        )
    else:
        context.log.error(f"enrich sync exited {code}: an error stopped part of the work")
        raise RetryRequested(
            max_retries=RETRIES, seconds_to_wait=enrich_project.retry_delay_seconds
        )


@op(ins={"synced": In(Nothing)}, retry_policy=_retry_policy())
def dbt_build_enriched(context: OpExecutionContext, enrich_project: EnrichProject) -> None:
    """Builds what landed into the enriched tables."""
    enrich_project.dbt_build(context)


@job(tags={"batch-enrich": "loop"})
def batch_enrich_loop() -> None:
    dbt_build_enriched(enrich_sync(dbt_build_flagged()))


def _from_env() -> EnrichProject:
    env = os.environ
    return EnrichProject(
        project_dir=env.get("DBT_PROJECT_DIR", "."),
        dbt=shlex.split(env.get("DBT", "dbt")),
        enrich=shlex.split(env.get("ENRICH", "enrich")),
        dbt_build_args=shlex.split(env.get("DBT_BUILD_ARGS", "")),
        sync_args=shlex.split(env.get("ENRICH_SYNC_ARGS", "")),
        retry_delay_seconds=float(env.get("ENRICH_RETRY_DELAY_SECONDS", "300")),
    )


defs = Definitions(
    jobs=[batch_enrich_loop],
    schedules=[ScheduleDefinition(job=batch_enrich_loop, cron_schedule="*/10 * * * *")],
    resources={"enrich_project": _from_env()},
)
