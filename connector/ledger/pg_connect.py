"""Postgres connections made from the dbt profile's target, the way dbt-postgres makes
them. Every connection the connector opens to Postgres (the ledger's writer, the
flagged-view reader, the sync guard's session) goes through `connect`, so that each one
carries every connection option the profile gives: TLS (`sslmode`, `sslrootcert`,
`sslcert`, `sslkey`), `connect_timeout`, `keepalives_idle`, `search_path` and `role`.

The profile keys are dbt-postgres's (`PostgresCredentials`): `host`, `port`, `user`,
`password` (or `pass`), `dbname` (or `database`), `connect_timeout` (default 10, as
dbt), `keepalives_idle` (0 or unset: libpq's default), `search_path` (sent as
`options=-c search_path=...`, spaces escaped as dbt does), `sslmode`, `sslcert`,
`sslkey`, `sslrootcert`, `application_name` and `role` (applied with `SET ROLE` on every
connection, committed, before it is handed out). dbt-postgres's `retries` is not
applied: a refused connection is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from connector.errors import ConfigError
from connector.project import Target

#: Profile keys passed to libpq as they are (when set).
PASSTHROUGH_KEYS: Final = ("host", "user", "sslmode", "sslcert", "sslkey", "sslrootcert")
#: dbt-postgres's default `connect_timeout` (seconds).
DEFAULT_CONNECT_TIMEOUT: Final = 10
_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
#: Postgres truncates application_name to this many bytes (NAMEDATALEN - 1).
MAX_APPLICATION_NAME: Final = 63


def _first(params: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return value
    return None


def connect_kwargs(target: Target) -> dict[str, Any]:
    """The libpq keyword arguments of the target's profile (no `role`: that is a SET
    ROLE after connecting, see `connect`). Holds the password: never log it."""
    params = target.params
    kwargs: dict[str, Any] = {k: params[k] for k in PASSTHROUGH_KEYS if _first(params, k)}
    port = _first(params, "port")
    if port is not None:
        kwargs["port"] = int(port)
    password = _first(params, "password", "pass")
    if password is not None:
        kwargs["password"] = str(password)
    dbname = _first(params, "dbname", "database")
    if dbname is not None:
        kwargs["dbname"] = str(dbname)
    timeout = _first(params, "connect_timeout")
    kwargs["connect_timeout"] = int(DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout)
    # 0 means libpq's default; dbt does not pass it (libpq would call setsockopt with 0)
    if _first(params, "keepalives_idle"):
        kwargs["keepalives_idle"] = int(params["keepalives_idle"])
    search_path = _first(params, "search_path")
    if search_path is not None:
        kwargs["options"] = "-c search_path=" + str(search_path).replace(" ", "\\ ")
    application_name = _first(params, "application_name")
    if application_name is not None:
        kwargs["application_name"] = str(application_name)
    return kwargs


def application_name(target: Target, purpose: str) -> str:
    """What a connection shows in pg_stat_activity: `purpose` (e.g. `batch-enrich-reader`),
    after the profile's own application_name when it sets one."""
    profile = _first(target.params, "application_name")
    name = purpose if profile is None else f"{profile} {purpose}"
    return name.encode()[:MAX_APPLICATION_NAME].decode(errors="ignore")


def role_name(role: str) -> str:
    """The role a profile's `role` names. dbt-postgres writes it unquoted into SET ROLE,
    so Postgres folds a plain identifier to lower case; here it is quoted (never spliced
    into SQL), so it is folded the same way first. A name that is not a plain identifier
    is taken as written."""
    return role.lower() if _PLAIN_IDENTIFIER.fullmatch(role) else role


def connect(
    target: Target, purpose: str, *, autocommit: bool = False
) -> psycopg.Connection[TupleRow]:
    """A connection with every option of the target's profile and its `role` set.

    `purpose` names the connection in pg_stat_activity (`application_name`). The SET ROLE
    is committed, so a later rollback keeps it. A refused connection, or a role the user
    may not take, is a ConfigError naming the target (libpq's message names host and
    database, never the password).
    """
    kwargs = connect_kwargs(target)
    kwargs["application_name"] = application_name(target, purpose)
    try:
        conn = psycopg.connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot connect to Postgres target '{target.name}': {exc}") from None
    role = _first(target.params, "role")
    if role is not None:
        try:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(role_name(str(role)))))
            if not autocommit:
                conn.commit()
        except psycopg.Error as exc:
            conn.close()
            raise ConfigError(
                f"Postgres target '{target.name}': cannot set role {role!r}: {exc}"
            ) from None
    return conn
