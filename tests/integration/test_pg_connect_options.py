"""The ledger's Postgres connections (writer and flagged-view reader) carry the profile's
options and role (real cluster; the reader is observed through what the view returns
and pg_stat_activity)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from harness.postgres import PgDatabase
from psycopg import sql

from connector.errors import ConfigError
from connector.ledger.postgres import PostgresLedger
from connector.project import Relation, Target

# what each connection sees of itself: its role, search_path and name
WHOAMI = """
create view analytics.whoami as
select current_user::text as who, session_user::text as login,
    current_setting('search_path') as search_path,
    current_setting('application_name') as app
"""


@pytest.fixture
def role(pg_db: PgDatabase) -> Iterator[str]:
    name = f"enrich_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_db.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {}").format(sql.Identifier(name)))
        conn.execute("create schema analytics")
        conn.execute(WHOAMI)
        conn.execute(sql.SQL("grant usage on schema analytics to {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("grant select on analytics.whoami to {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_db.conninfo, autocommit=True) as conn:
        conn.execute("drop view analytics.whoami")
        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))


def _target(db: PgDatabase, **extra: object) -> Target:
    params = {
        "type": "postgres",
        "host": db.host,
        "port": db.port,
        "user": db.user,
        "password": "",
        "dbname": db.dbname,
        "schema": "analytics",
        **extra,
    }
    return Target(name="test", type="postgres", params=params)


def _activity(db: PgDatabase) -> set[str]:
    with psycopg.connect(db.conninfo) as conn:
        rows = conn.execute(
            "select application_name from pg_stat_activity where datname = %s and pid <> "
            "pg_backend_pid()",
            (db.dbname,),
        ).fetchall()
    return {r[0] for r in rows}


def test_writer_and_reader_carry_the_profiles_options_and_role(
    pg_db: PgDatabase, role: str
) -> None:
    target = _target(
        pg_db,
        role=role,
        search_path="analytics, public",
        connect_timeout=17,
        keepalives_idle=45,
        application_name="nightly",
    )
    ledger = PostgresLedger.connect(target, "enrich")
    try:
        writer = ledger._conn
        assert writer.execute("select current_user").fetchone() == (role,)
        writer.rollback()  # SET ROLE was committed: a rollback keeps it
        assert writer.execute("select current_user").fetchone() == (role,)
        writer.rollback()
        options = writer.info.get_parameters()
        assert options["connect_timeout"] == "17"
        assert options["keepalives_idle"] == "45"
        assert options["options"] == "-c search_path=analytics,\\ public"

        chunks = ledger.stream_flagged(
            Relation(None, "analytics", "whoami"), ["who", "login", "search_path", "app"], 10
        )
        (row,) = next(chunks)
        # the reader is open while the generator is: both connections are there
        assert {"nightly batch-enrich", "nightly batch-enrich-reader"} <= _activity(pg_db)
        assert list(chunks) == []
    finally:
        ledger.close()
    assert row == (role, pg_db.user, "analytics, public", "nightly batch-enrich-reader")


def test_a_role_the_user_cannot_take_is_a_config_error(pg_db: PgDatabase) -> None:
    with pytest.raises(ConfigError, match="cannot set role 'no_such_role'"):
        PostgresLedger.connect(_target(pg_db, role="no_such_role"), "enrich")
