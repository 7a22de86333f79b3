"""Session-wide fixtures. The logic lives in ``tests/harness/``; this file only wires it.

- ``pg_cluster`` (session): a private PostgreSQL cluster (``host`` = socket dir, ``port``,
  ``user``, ``bindir``, ``conninfo(dbname)``, ``env(dbname)``).
- ``pg_db`` (function): a fresh, empty database, dropped afterwards (``dbname``, ``host``,
  ``port``, ``user``, ``conninfo``, ``env``).
- ``dbt`` (function): ``dbt.invoke(args, project_dir, profiles_dir, env=None,
  expect_fail=False)`` runs dbt in-process; ``dbt.target_path`` holds ``manifest.json``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.dbt_runner import DbtHarness
from harness.postgres import (
    PgCluster,
    PgDatabase,
    PostgresHarnessError,
    fresh_database,
    start_cluster,
)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PostgresHarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    with fresh_database(pg_cluster) as db:
        yield db


@pytest.fixture
def dbt(tmp_path_factory: pytest.TempPathFactory) -> DbtHarness:
    return DbtHarness(tmp_path_factory.mktemp("dbt"))
