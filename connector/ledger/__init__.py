"""The ledger: the connector's durable state in the warehouse (batches, requests,
results_raw, rejections). `open_ledger` picks the implementation for the target."""

from __future__ import annotations

from connector.errors import ConfigError
from connector.ledger.base import (
    BatchRecord,
    Ledger,
    PollUpdate,
    RequestRecord,
    StatusRow,
)
from connector.project import Target

__all__ = [
    "BatchRecord",
    "Ledger",
    "PollUpdate",
    "RequestRecord",
    "StatusRow",
    "open_ledger",
]


def open_ledger(target: Target, schema: str) -> Ledger:
    if target.type == "postgres":
        from connector.ledger.postgres import PostgresLedger

        return PostgresLedger.connect(target, schema)
    if target.type == "duckdb":
        from connector.ledger.duckdb import DuckDBLedger

        return DuckDBLedger.connect(target, schema)
    raise ConfigError(
        f"target '{target.name}' has type '{target.type}'; the connector supports: postgres, duckdb"
    )
