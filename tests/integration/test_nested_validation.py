"""Nested structured output is validated whole (issue 11, item 5): objects in objects,
arrays of objects, arrays in array elements; a violation at any depth quarantines the
result with the path of the first violation, on Postgres and on DuckDB.

A throwaway project installs this repository as a package (as
test_declaration_isolation.py does) and declares three enrichments: the two examples, as
declared in models/examples/_examples.yml, and `order_audit`, whose schema nests arrays
of objects inside objects. Result lines are written straight into the ledger (as
tests/integration/test_dbt_package.py does), then one `dbt build` validates them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from harness.dbt_runner import DbtHarness
from harness.enrich_project import write_package_project
from harness.warehouses import DuckDBWarehouse, PostgresWarehouse, Warehouse

from connector.custom_id import custom_id_for
from connector.declaration import DeclarationError, parse_declaration

REPO = Path(__file__).resolve().parents[2]
LANDED_AT = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.UTC)
BACKSLASH = "note\\"


def _example_declarations() -> dict[str, dict[str, Any]]:
    """The examples' declarations, as models/examples/_examples.yml declares them."""
    models = yaml.safe_load((REPO / "models" / "examples" / "_examples.yml").read_text())
    return {
        m["name"]: m["config"]["meta"]["enrich"]
        for m in models["models"]
        if "enrich" in (m.get("config") or {}).get("meta", {})
    }


# the project's enrichments: the examples under other names (the package's example models
# keep theirs, even when disabled), and order_audit
TRIAGE, ASPECTS = "triage_example", "aspects_example"


ORDER_AUDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "address": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "postcode": {"type": "string", "maxLength": 8},
                    },
                    "required": ["city"],
                },
            },
            "required": ["name", "address"],
        },
        "order": {
            "type": "object",
            "properties": {
                "lines": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 3,
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string"},
                            "quantity": {"type": "integer", "minimum": 1},
                            "tags": {
                                "type": "array",
                                "items": {"type": "string", "enum": ["gift", "fragile", "bulk"]},
                            },
                            BACKSLASH: {"type": "string", "maxLength": 5},
                        },
                        "required": ["sku", "quantity"],
                    },
                }
            },
            "required": ["lines"],
        },
    },
    "required": ["customer", "order"],
    "additionalProperties": False,
}
ORDER_AUDIT = {
    "primary_key": "order_id",
    "model": "claude-haiku-4-5",
    "max_tokens": 500,
    "output_schema": ORDER_AUDIT_SCHEMA,
}

CUSTOMER = {"name": "Ada", "address": {"city": "Paris", "postcode": "75001"}}
LINE = {"sku": "A1", "quantity": 2}

# (enrichment, key, output, the expected invalid_reason: None when valid)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    (
        TRIAGE,
        {"ticket_id": 1},
        {"category": "bug", "urgency": 3, "summary": "Exports hang."},
        None,
    ),
    (
        TRIAGE,
        {"ticket_id": 2},
        {"category": "bug", "urgency": 9, "summary": "Exports hang."},
        "$.urgency: 9 is above maximum 5",
    ),
    (
        ASPECTS,
        {"product_id": "P-1", "review_id": 1},
        {
            "aspects": [
                {"aspect": "battery", "sentiment": "negative"},
                {"aspect": "sound", "sentiment": "positive"},
            ]
        },
        None,
    ),
    (
        ASPECTS,
        {"product_id": "P-1", "review_id": 2},
        {
            "aspects": [
                {"aspect": "battery", "sentiment": "negative"},
                {"aspect": "sound", "sentiment": "positive"},
                {"aspect": "screen", "sentiment": "great"},
            ]
        },
        "$.aspects[2].sentiment: 'great' not in enum",
    ),
    (
        ASPECTS,
        {"product_id": "P-2", "review_id": 1},
        {"aspects": [{"aspect": "fit", "sentiment": "neutral"}, {"sentiment": "positive"}]},
        "$.aspects[1]: missing required key aspect",
    ),
    (
        "order_audit",
        {"order_id": 1},
        {
            "customer": CUSTOMER,
            "order": {"lines": [LINE | {"tags": ["gift", "bulk"], BACKSLASH: "ok"}, LINE]},
        },
        None,
    ),
    (
        "order_audit",
        {"order_id": 2},
        {"customer": {"name": "Ada", "address": {"postcode": "75001"}}, "order": {"lines": [LINE]}},
        "$.customer.address: missing required key city",
    ),
    (
        "order_audit",
        {"order_id": 3},
        {"customer": CUSTOMER, "order": {"lines": [LINE, LINE | {"tags": ["urgent", "gift"]}]}},
        "$.order.lines[1].tags[0]: 'urgent' not in enum",
    ),
    (
        "order_audit",
        {"order_id": 4},
        {"customer": CUSTOMER, "order": {"lines": [LINE | {BACKSLASH: "too long"}]}},
        '$.order.lines[0]["note\\\\"]: 8 characters, above maxLength 5',
    ),
    (
        "order_audit",
        {"order_id": 5},
        {"customer": CUSTOMER, "order": {"lines": []}},
        "$.order.lines: 0 items, below minItems 1",
    ),
]

INPUT_MODELS = {
    TRIAGE: "select * from (values (1, 'p'), (2, 'p')) as t(ticket_id, prompt)\n",
    ASPECTS: (
        "select * from (values ('P-1', 1, 'p'), ('P-1', 2, 'p'), ('P-2', 1, 'p'))"
        " as t(product_id, review_id, prompt)\n"
    ),
    "order_audit": "select * from (values (1, 'p'), (2, 'p'), (3, 'p'), (4, 'p'), (5, 'p'))"
    " as t(order_id, prompt)\n",
}


def _project(root: Path) -> Path:
    examples = _example_declarations()
    declarations = {
        TRIAGE: examples["ticket_triage"],
        ASPECTS: examples["review_aspects"],
        "order_audit": ORDER_AUDIT,
    }
    assert set(declarations) == set(INPUT_MODELS)
    models = dict(INPUT_MODELS)
    for name in declarations:
        models[f"{name}__flagged"] = f"{{{{ batch_enrich.flagged('{name}') }}}}\n"
        models[f"{name}__enriched"] = (
            f"{{{{ config(materialized='table') }}}}\n{{{{ batch_enrich.enriched('{name}') }}}}\n"
        )
    properties = [
        {"name": name, "config": {"meta": {"enrich": decl}}} for name, decl in declarations.items()
    ]
    return write_package_project(root, models, properties)


def _line(custom_id: str, enrichment: str, output: Mapping[str, Any]) -> str:
    if enrichment == ASPECTS:
        block = {"type": "tool_use", "id": "toolu_01", "name": "record_aspects", "input": output}
        content, stop_reason = [block], "tool_use"
    else:
        content, stop_reason = [{"type": "text", "text": json.dumps(output)}], "end_turn"
    message = {
        "model": "claude-haiku-4-5-20251001",
        "id": f"msg_{custom_id}",
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 20},
    }
    return json.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})


BATCH = """insert into enrich.batches (submission_id, batch_id, enrichment, status,
    request_count, body_bytes, processing_status, succeeded_count, errored_count,
    canceled_count, expired_count, intent_at, submitted_at, ended_at, landed_at, landed_lines)
    values (%s, %s, %s, 'landed', %s, 1000, 'ended', %s, 0, 0, 0, %s, %s, %s, %s, %s)"""
REQUEST = """insert into enrich.requests (submission_id, custom_id, enrichment, primary_key,
    request_hash, input_hash, attempt, flag_reason, model, prompt_version, max_tokens,
    params_bytes) values (%s, %s, %s, %s, %s, null, 1, 'new', 'claude-haiku-4-5', 'v1', 500, 500)"""
LINE_ROW = """insert into enrich.results_raw (batch_id, custom_id, result_type, line, landed_at)
    values (%s, %s, 'succeeded', %s, %s)"""


def _execute(warehouse: Warehouse, statement: str, rows: Sequence[Sequence[object]]) -> None:
    if isinstance(warehouse, PostgresWarehouse):
        with psycopg.connect(warehouse.db.conninfo) as conn, conn.cursor() as cursor:
            cursor.executemany(statement, rows)
    else:
        assert isinstance(warehouse, DuckDBWarehouse)
        with warehouse.connect() as conn:
            conn.executemany(statement.replace("%s", "?"), rows)


def _land(warehouse: Warehouse) -> dict[tuple[str, str], str | None]:
    """One landed batch per enrichment, a line per case; (enrichment, custom_id) -> reason."""
    expected: dict[tuple[str, str], str | None] = {}
    for enrichment in INPUT_MODELS:
        cases = [c for c in CASES if c[0] == enrichment]
        submission_id, batch_id = f"sub_{enrichment}", f"msgbatch_{enrichment}"
        intent = LANDED_AT - dt.timedelta(hours=1)
        batch = (submission_id, batch_id, enrichment, len(cases), len(cases))
        _execute(warehouse, BATCH, [(*batch, intent, intent, LANDED_AT, LANDED_AT, len(cases))])
        requests, lines = [], []
        for _, key, output, reason in cases:
            custom_id = custom_id_for(list(key.values()))
            expected[enrichment, custom_id] = reason
            requests.append((submission_id, custom_id, enrichment, json.dumps(key), "old-hash"))
            lines.append((batch_id, custom_id, _line(custom_id, enrichment, output), LANDED_AT))
        _execute(warehouse, REQUEST, requests)
        _execute(warehouse, LINE_ROW, lines)
    return expected


def test_nested_violations_are_quarantined_with_their_path(
    tmp_path: Path, dbt: DbtHarness, warehouse: Warehouse
) -> None:
    project = _project(tmp_path)
    env = warehouse.env
    dbt.invoke(["deps"], project, project, env=env)
    dbt.invoke(["run-operation", "batch_enrich.ensure_ledger"], project, project, env=env)
    expected = _land(warehouse)

    dbt.invoke(["build"], project, project, env=env)

    validated = warehouse.fetch(
        "select enrichment, custom_id, is_valid, invalid_reason "
        "from analytics.int_enrich__results_validated"
    )
    assert len(validated) == len(CASES)
    assert {(e, cid): (ok, reason) for e, cid, ok, reason in validated} == {
        key: (reason is None, reason) for key, reason in expected.items()
    }
    failures = warehouse.fetch(
        "select enrichment, custom_id, failure_type, failure_reason from analytics.enrich_failures"
    )
    assert sorted(failures) == sorted(
        (*key, "succeeded_invalid", reason) for key, reason in expected.items() if reason
    )
    # quarantined: an invalid output never becomes an enriched value; a valid one does
    enriched = warehouse.fetch(
        "select order_id, customer is not null, custom_id from analytics.order_audit__enriched"
    )
    assert sorted(enriched) == [(1, True, "1"), *[(k, False, None) for k in range(2, 6)]]
    aspects = warehouse.fetch(
        "select product_id, review_id, aspects is not null from analytics.aspects_example__enriched"
    )
    assert sorted(aspects) == [("P-1", 1, True), ("P-1", 2, False), ("P-2", 1, False)]


# -- the package and the connector accept the same nested schemas ------------------------

MINIMAL: dict[str, Any] = {"primary_key": "id", "model": "claude-haiku-4-5", "max_tokens": 100}


def _nested(**keywords: Any) -> dict[str, Any]:
    """A declaration whose property `a` is an array of objects with the property `b`."""
    item = {"type": "object", "properties": {"b": keywords}}
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": item}}}
    return MINIMAL | {"output_schema": schema}


def _in_object(**keywords: Any) -> dict[str, Any]:
    """A declaration whose property `a` is an object with the keywords given."""
    schema = {"type": "object", "properties": {"a": {"type": "object", **keywords}}}
    return MINIMAL | {"output_schema": schema}


# name -> declaration; the connector's parse_declaration decides which are valid
PARITY_CASES: dict[str, Any] = {
    "order_audit": ORDER_AUDIT,
    "examples_tool": _example_declarations()["review_aspects"],
    "bounds": _nested(type=["number", "null"], minimum=-1.5, exclusiveMaximum=1e3, enum=[1, None]),
    "lengths": _nested(type="string", minLength=0, maxLength=10),
    "items_counts": _nested(type="array", minItems=0, maxItems=3, items={"type": "string"}),
    "object_required": _in_object(properties={"c": {"type": "string"}}, required=["c"]),
    # invalid
    "max_length_float": _nested(type="string", maxLength=5.0),
    "max_length_negative": _nested(type="string", maxLength=-1),
    "min_length_text": _nested(type="string", minLength="(select 1)"),
    "min_items_float": _nested(type="array", minItems=1.0),
    "max_items_bool": _nested(type="array", maxItems=True),
    "minimum_text": _nested(type="number", minimum="5"),
    "minimum_inf": _nested(type="number", minimum=float("inf")),
    "type_unknown": _nested(type="text"),
    "type_empty": _nested(type=[]),
    "type_twice": _nested(type=["string", "string"]),
    "type_null": _nested(type=None),
    "enum_text": _nested(enum="abc"),
    "items_true": _nested(type="array", items=True),
    "items_list": _nested(type="array", items=[{"type": "string"}]),
    "properties_null": _in_object(properties=None),
    "property_empty_name": _in_object(properties={"": {"type": "string"}}),
    "property_bool_schema": _in_object(properties={"c": True}),
    "required_missing": _in_object(properties={"c": {"type": "string"}}, required=["d"]),
    "required_without_properties": _in_object(required=["d"]),
    "required_twice": _in_object(properties={"c": {}}, required=["c", "c"]),
    "required_text": _in_object(properties={"c": {}}, required="c"),
    "root_min_items_float": MINIMAL | {"output_schema": {"type": "object", "minItems": 1.0}},
}

PARITY_MACRO = """
{% macro nested_parity_problems() %}
    {%- set problems = {} -%}
    {%- set cases = var('parity_cases') -%}
    {%- for name in cases -%}
        {%- set meta = {'meta': {'enrich': cases[name]}} -%}
        {%- set node = {'name': name, 'original_file_path': 'cases', 'config': meta} -%}
        {%- do problems.update({name: batch_enrich.declaration_problem(node)}) -%}
    {%- endfor -%}
    {%- do log('PARITY ' ~ tojson(problems), info=true) -%}
{% endmacro %}
"""


def _python_problem(name: str, decl: Any) -> str | None:
    try:
        parse_declaration(name, decl)
    except DeclarationError as exc:
        return str(exc)
    return None


def test_the_package_and_the_connector_accept_the_same_nested_schemas(
    tmp_path: Path, dbt: DbtHarness
) -> None:
    project = write_package_project(
        tmp_path,
        {},
        project_vars={"parity_cases": PARITY_CASES},
        macros={"parity": PARITY_MACRO},
    )
    env = {"BATCH_ENRICH_TARGET": "duckdb", "BATCH_ENRICH_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    dbt.invoke(["deps"], project, project, env=env)
    dbt.invoke(["run-operation", "nested_parity_problems"], project, project, env=env)

    (said,) = [m for m in dbt.messages if "PARITY {" in m]
    package = json.loads(said[said.index("PARITY ") + len("PARITY ") :])
    assert set(package) == set(PARITY_CASES)
    python = {name: _python_problem(name, decl) for name, decl in PARITY_CASES.items()}
    disagree = {
        name: (python[name], package[name])
        for name in PARITY_CASES
        if (python[name] is None) != (package[name] is None)
    }
    assert disagree == {}
    # both ways are exercised, and every refusal names the model and the nested key
    assert [name for name, problem in python.items() if problem is None] == list(PARITY_CASES)[:6]
    assert all(f"model '{n}'" in p for n, p in package.items() if p is not None)
    assert "output_schema.properties.a.items.properties.b.maxLength" in package["max_length_float"]
    assert (
        ".properties.a.items.properties.b.items must be a schema mapping" in package["items_true"]
    )
