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

# The suite runs on xdist workers, which take tests in collection order: the long ones
# first, so that the run does not end with one worker on a 90 s test and the others
# idle (the unit tests, many and short, fill the gaps at the end).
LONG_FIRST = (
    "tests/e2e/test_pipeline.py",
    "tests/integration/test_backlog.py",
    "tests/unit/test_code_quality.py",
    "tests/integration/test_chaos.py",
    "tests/integration/test_dbt_package.py",
    "tests/integration/test_budget_dbt_test.py",
    "tests/e2e/",
    "tests/integration/test_exactly_once.py",
    "tests/integration/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next(
            (i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)),
            len(LONG_FIRST),
        )

    items.sort(key=rank)  # stable: the order within a rank stays as collected


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
