"""What `enrich sync` prints comes from data (keys, reasons): it is printed as written,
never read as rich markup, through the real CLI (click's in-process runner), in a normal
run and in a run a budget stops (exit 4)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from harness.enrich_project import KEY_TYPES
from harness.warehouses import DuckDBWarehouse, PostgresWarehouse, Warehouse
from sqlglot import exp

from connector.cli import main
from connector.errors import EXIT_BUDGET, EXIT_OK
from connector.project import price_relation

# `[/red]` closes a tag never opened (rich raises MarkupError); `[link=...]` is a valid
# tag that would become a terminal hyperlink (OSC 8) around "y"
ODD_KEYS = ["[/red]", "[link=http://x]y[/link]", ":thumbs_up: [bold]b[/bold]"]
# a terminal hyperlink (OSC 8) to the key's URL; rich's own log-path links are fine
LINK_TO_DATA = re.compile(r"\x1b\]8;[^;]*;http://x")


@pytest.fixture(autouse=True)
def _restore_connector_logging() -> Iterator[None]:
    """The CLI configures the `connector` loggers for its process; in-process, undo it so
    later tests' log capture still sees them."""
    names = ("connector", "anthropic", "httpx", "httpcore")
    saved = {
        n: (lg.level, lg.propagate, list(lg.handlers))
        for n in names
        for lg in [logging.getLogger(n)]
    }
    yield
    for n, (level, propagate, handlers) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers


def _execute(wh: Warehouse, statement: str) -> None:
    if isinstance(wh, PostgresWarehouse):
        with psycopg.connect(wh.db.conninfo, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]
    else:
        assert isinstance(wh, DuckDBWarehouse)
        with wh.connect() as conn:
            conn.execute(statement)


def _seed_prices(wh: Warehouse, project: Path) -> None:
    """The price seed's table where the manifest says dbt would build it (a budget needs
    prices), holding the test model's price row."""
    relation = price_relation(json.loads((project / "target" / "manifest.json").read_text()))
    assert relation is not None
    # identifiers quoted by sqlglot (double quotes: the same on both warehouses)
    schema = exp.to_identifier(relation.schema, quoted=True).sql("postgres")
    table = schema + "." + exp.to_identifier(relation.name, quoted=True).sql("postgres")
    _execute(wh, f"create schema if not exists {schema}")
    _execute(
        wh,
        f"create table if not exists {table} (model text, input_usd_per_mtok float, "
        "output_usd_per_mtok float, cache_write_5m_multiplier float, "
        "cache_write_1h_multiplier float, cache_read_multiplier float, batch_discount float)",
    )
    price = "('claude-haiku-4-5', 1, 5, 1.25, 2, 0.1, 0.5)"
    _execute(wh, f"insert into {table} values {price}")  # noqa: S608 (quoted above)


def _sync(project: Path, *args: str) -> tuple[int, str]:
    # a wide console (no wrapping inside a key) that renders styles and links, as a
    # terminal would
    runner = CliRunner(env={"COLUMNS": "400", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"})
    result = runner.invoke(
        main,
        ["sync", "--project-dir", str(project), "--select", "docs", "--poll-interval", "0", *args],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("odd_key", ODD_KEYS)
def test_keys_that_look_like_markup_are_printed_as_written(
    enrich_env: Warehouse, enrich_project: Path, odd_key: str
) -> None:
    # the odd key's prompt is empty: a rejection, printed with its key
    enrich_env.create_source("docs", [(odd_key, "  "), ("fine", "text")], KEY_TYPES["docs"])
    enrich_env.create_flagged_views(enrich_project, ["docs"])

    code, output = _sync(enrich_project)

    assert code == EXIT_OK, output
    assert f'rejected row {{"doc_key":"{odd_key}"}}' in output
    assert "prompt column 'prompt' is empty" in output
    assert LINK_TO_DATA.search(output) is None


@pytest.mark.parametrize("odd_key", ODD_KEYS)
def test_keys_that_look_like_markup_keep_the_budget_exit_code(
    enrich_env: Warehouse, enrich_project: Path, odd_key: str
) -> None:
    rows = [(odd_key, "  "), *((f"fine-{i}", f"text {i}") for i in range(3))]
    enrich_env.create_source("docs", rows, KEY_TYPES["docs"])
    enrich_env.create_flagged_views(enrich_project, ["docs"])
    _seed_prices(enrich_env, enrich_project)

    code, output = _sync(enrich_project, "--max-usd", "0")

    assert code == EXIT_BUDGET, output
    assert f'rejected row {{"doc_key":"{odd_key}"}}' in output
    assert "budget: docs: estimate" in output
    assert LINK_TO_DATA.search(output) is None
