"""Profile target → libpq options: every connection option dbt-postgres takes."""

from __future__ import annotations

from typing import Any

import pytest

from connector.ledger.pg_connect import (
    DEFAULT_CONNECT_TIMEOUT,
    application_name,
    connect_kwargs,
    role_name,
)
from connector.project import Target

FULL: dict[str, Any] = {
    "type": "postgres",
    "host": "db.internal",
    "port": 6432,
    "user": "loader",
    "password": "s3cret",
    "dbname": "analytics",
    "schema": "analytics",
    "threads": 4,
    "connect_timeout": 7,
    "keepalives_idle": 30,
    "search_path": "app, public",
    "sslmode": "verify-full",
    "sslcert": "/certs/client.crt",
    "sslkey": "/certs/client.key",
    "sslrootcert": "/certs/ca.crt",
    "application_name": "nightly",
    "role": "transformer",
    "retries": 3,
}


def _target(**params: Any) -> Target:
    return Target(name="prod", type="postgres", params=params)


def test_every_libpq_option_of_the_profile_is_passed() -> None:
    assert connect_kwargs(_target(**FULL)) == {
        "host": "db.internal",
        "port": 6432,
        "user": "loader",
        "password": "s3cret",
        "dbname": "analytics",
        "connect_timeout": 7,
        "keepalives_idle": 30,
        "options": "-c search_path=app,\\ public",
        "sslmode": "verify-full",
        "sslcert": "/certs/client.crt",
        "sslkey": "/certs/client.key",
        "sslrootcert": "/certs/ca.crt",
        "application_name": "nightly",
    }


def test_a_minimal_profile_gets_dbts_defaults_and_nothing_else() -> None:
    kwargs = connect_kwargs(_target(host="h", user="u", password="", port=5432, database="d"))
    assert kwargs == {
        "host": "h",
        "user": "u",
        "port": 5432,
        "dbname": "d",
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    }


@pytest.mark.parametrize(
    ("params", "key", "value"),
    [
        ({"pass": "p"}, "password", "p"),  # dbt's alias
        ({"database": "d"}, "dbname", "d"),
        ({"dbname": "x", "database": "d"}, "dbname", "x"),
        ({"port": "5433"}, "port", 5433),  # rendered env_var text
        ({"connect_timeout": "3"}, "connect_timeout", 3),
        ({"keepalives_idle": 0}, "keepalives_idle", None),  # 0: libpq's default, not sent
        ({"search_path": ""}, "options", None),
        ({"sslmode": None}, "sslmode", None),
    ],
)
def test_aliases_types_and_unset_values(params: dict[str, Any], key: str, value: object) -> None:
    assert connect_kwargs(_target(**params)).get(key) == value


def test_role_is_not_a_libpq_option() -> None:
    assert "role" not in connect_kwargs(_target(**FULL))


@pytest.mark.parametrize(
    ("role", "expected"),
    [("Transformer", "transformer"), ("etl_2$", "etl_2$"), ("Data Team", "Data Team")],
)
def test_role_is_folded_like_an_unquoted_identifier(role: str, expected: str) -> None:
    assert role_name(role) == expected


def test_application_name_keeps_the_profiles_and_says_what_the_connection_is() -> None:
    assert application_name(_target(), "batch-enrich-reader") == "batch-enrich-reader"
    named = application_name(_target(application_name="nightly"), "batch-enrich-reader")
    assert named == "nightly batch-enrich-reader"
    assert len(application_name(_target(application_name="é" * 60), "x").encode()) <= 63
