"""One bad declaration stops only itself; declaration values reach SQL only validated and
quoted; reserved-word columns are columns; the examples stay out of installing projects.

Each test installs this repository as a package (packages.yml `local:`, `dbt deps`) into
a throwaway project and runs dbt in-process (DbtHarness), on Postgres and on DuckDB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness.dbt_runner import DbtHarness
from harness.enrich_project import write_package_project
from harness.warehouses import Warehouse

from connector.declaration import DeclarationError, parse_declaration
from connector.settings import Settings
from connector.sync import sync

# -- the project: one good enrichment with reserved-word columns, several bad ones ---------

# The good enrichment's key column is `user` and its prompt column is `order` (reserved
# words: unquoted, `user` is the database user and `order` a syntax error); one output
# property is named `select`, another ends in a backslash (a JSON-path escape on DuckDB).
GOOD_ROWS = {1: "Label the first item", 2: "Label the second item", 3: "Label the third"}
# (a dbt model file, written for dbt: not SQL run by the test process)
GOOD_VALUES = ", ".join(f"({k}, '{p}')" for k, p in GOOD_ROWS.items())
GOOD_INPUT = f'select * from (values {GOOD_VALUES}) as t("user", "order")\n'  # noqa: S608
BACKSLASH = "note\\"
GOOD_SCHEMA = {
    "type": "object",
    "properties": {
        "select": {"type": "string", "enum": ["yes", "no"]},
        BACKSLASH: {"type": "string", "maxLength": 400},
        "score": {"type": "integer", "minimum": -1.5, "maximum": 1e3, "enum": [1, 2, 3, 4, 5]},
    },
    "required": ["select", BACKSLASH, "score"],
    "additionalProperties": False,
}
GOOD = {
    "primary_key": "user",
    "prompt_column": "order",
    "model": "claude-haiku-4-5",
    "max_tokens": 200,
    "system": "You label items.",
    "output_schema": GOOD_SCHEMA,
}


def _bad(**changes: Any) -> dict[str, Any]:
    decl = json.loads(json.dumps(GOOD | {"primary_key": "item_id", "prompt_column": "prompt"}))
    for path, value in changes.items():
        node = decl
        *parents, last = path.split("/")
        for part in parents:
            node = node[part]
        node[last] = value
    return decl


# The canary: were this expression ever rendered into SQL, the relation it names does
# not exist and every statement holding it fails; and the test looks for it in all the
# SQL dbt compiled.
CANARY = "(select count(*) from app.canary_never_run) + 1000"

# bad enrichment -> (declaration, the key the failure must name)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "bad_inf": (
        _bad(**{"output_schema/properties/score/minimum": float("inf")}),
        "config.meta.enrich.output_schema.properties.score.minimum must be a finite number",
    ),
    "bad_canary": (
        _bad(**{f"output_schema/properties/{BACKSLASH}/maxLength": CANARY}),
        f"config.meta.enrich.output_schema.properties.{BACKSLASH}.maxLength must be an integer",
    ),
    "bad_nul": (
        _bad(system="You label\x00 items."),
        "config.meta.enrich.system contains a NUL character",
    ),
    "bad_blank_system": (
        _bad(system="   "),
        "config.meta.enrich.system must be a non-empty string",
    ),
    "bad_multiplier": (
        _bad(repair={"on_max_tokens": True, "max_tokens_multiplier": float("nan")}),
        "config.meta.enrich.repair.max_tokens_multiplier must be a finite number",
    ),
}
BAD_INPUT = "select * from (values (1, 'Label it')) as t(item_id, prompt)\n"


def _isolation_project(root: Path) -> Path:
    models = {"good": GOOD_INPUT}
    properties: list[dict[str, Any]] = [
        {"name": "good", "config": {"meta": {"enrich": GOOD}}},
        # the package's grain test, on reserved-word columns
        {
            "name": "good__enriched",
            "data_tests": [
                {"batch_enrich.unique_combination": {"arguments": {"columns": ["user", "order"]}}}
            ],
        },
    ]
    for name, (decl, _) in BAD.items():
        models[name] = BAD_INPUT
        properties.append({"name": name, "config": {"meta": {"enrich": decl}}})
    for name in ["good", *BAD]:
        models[f"{name}__flagged"] = f"{{{{ batch_enrich.flagged('{name}') }}}}\n"
        models[f"{name}__enriched"] = f"{{{{ batch_enrich.enriched('{name}') }}}}\n"
    return write_package_project(root, models, properties)


def _results(dbt: DbtHarness) -> dict[str, tuple[str, str]]:
    """unique_id -> (status, message) of the last dbt invocation."""
    data = json.loads((dbt.target_path / "run_results.json").read_text())
    return {r["unique_id"]: (r["status"], r.get("message") or "") for r in data["results"]}


def _compiled_sql(dbt: DbtHarness) -> str:
    texts = [p.read_text() for p in dbt.target_path.rglob("*.sql")]
    assert texts, "dbt wrote no compiled SQL"
    return "\n".join(texts)


def test_a_bad_declaration_fails_only_its_own_models(
    tmp_path: Path, dbt: DbtHarness, enrich_env: Warehouse
) -> None:
    project = _isolation_project(tmp_path)
    env = enrich_env.env
    dbt.invoke(["deps"], project, project, env=env)

    dbt.invoke(["build"], project, project, env=env, expect_fail=True)

    results = _results(dbt)
    failed = {uid: msg for uid, (status, msg) in results.items() if status == "error"}
    # each bad enrichment's flagged and enriched models fail, naming model, key and fix
    assert set(failed) == {
        f"model.installer.{name}__{kind}" for name in BAD for kind in ("flagged", "enriched")
    }
    for name, (_, key) in BAD.items():
        for kind in ("flagged", "enriched"):
            message = failed[f"model.installer.{name}__{kind}"]
            assert f"model '{name}'" in message
            assert key in message
            assert f"Fix config.meta.enrich of model '{name}'" in message
    # everything else builds: the package's shared models (validation included), the good
    # enrichment's models and the bad ones' plain input models
    built = {uid for uid, (status, _) in results.items() if status == "success"}
    assert "model.batch_enrich.int_enrich__results_validated" in built
    assert {u for u in results if u.startswith("model.batch_enrich.")} <= built
    assert {"model.installer.good__flagged", "model.installer.good__enriched"} <= built
    grain = [u for u in results if "unique_combination_good__enriched_user__order" in u]
    assert [results[u][0] for u in grain] == ["pass"]
    assert {f"model.installer.{name}" for name in BAD} <= built
    assert not [uid for uid, (status, _) in results.items() if status == "skipped"]
    # no hostile value reached any SQL dbt compiled or ran
    assert "canary_never_run" not in _compiled_sql(dbt)

    # `user` is the key column, not the database user; `order` is the prompt column
    flagged = enrich_env.fetch(
        'select "user", "order", flag_reason from analytics.good__flagged order by 1'
    )
    assert flagged == [(k, p, "new") for k, p in GOOD_ROWS.items()]

    # the connector reports the bad declarations and submits the good enrichment
    settings = Settings(
        project_dir=project,
        wait=True,
        poll_interval=0.0,
        reconcile_grace_seconds=0.0,
        max_wait_seconds=900.0,  # a hang guard for --wait, generous for a busy machine
    )
    report = sync(settings)
    assert [(s.enrichment, s.submitted) for s in report.submitted] == [("good", len(GOOD_ROWS))]
    for name in BAD:
        assert [e for e in report.errors if f"enrichment '{name}': meta.enrich." in e]

    # the next build validates and enriches the good enrichment's results
    dbt.invoke(["build"], project, project, env=env, expect_fail=True)
    lines = enrich_env.fetch(
        "select r.primary_key ->> 'user', x.line from enrich.results_raw as x "
        "join enrich.requests as r on r.custom_id = x.custom_id"
    )
    assert len(lines) == len(GOOD_ROWS)
    outputs = {}
    for key, line in lines:
        parsed = line if isinstance(line, dict) else json.loads(line)  # psycopg parses json
        (block,) = parsed["result"]["message"]["content"]
        outputs[int(key)] = json.loads(block["text"])
    validated = enrich_env.fetch(
        "select enrichment, is_valid, invalid_reason from analytics.int_enrich__results_validated"
    )
    assert validated == [("good", True, None)] * len(GOOD_ROWS)
    enriched = enrich_env.fetch(
        f'select "user", "select", "{BACKSLASH}", score '  # noqa: S608 - constant names
        "from analytics.good__enriched order by 1"
    )
    assert enriched == [
        (k, outputs[k]["select"], outputs[k][BACKSLASH], outputs[k]["score"]) for k in GOOD_ROWS
    ]


# -- the package and the connector accept the same declarations ---------------------------

MINIMAL: dict[str, Any] = {"primary_key": "id", "model": "claude-haiku-4-5", "max_tokens": 100}
OBJECT = {"type": "object", "properties": {"a": {"type": "string"}}}
TOOL = {"name": "record", "description": "Record it", "input_schema": OBJECT}


def _with_property(**keywords: Any) -> dict[str, Any]:
    return MINIMAL | {"output_schema": {"type": "object", "properties": {"a": keywords}}}


# name -> declaration; the connector's parse_declaration decides which are valid
PARITY_CASES: dict[str, Any] = {
    "minimal": MINIMAL,
    "good": GOOD,
    "tool": MINIMAL | {"tool": TOOL},
    "composite_key": MINIMAL | {"primary_key": ["a", "b"]},
    "null_optional": MINIMAL | {"prompt_version": None, "system": None, "repair": None},
    "backslash_name": MINIMAL
    | {"output_schema": {"type": "object", "properties": {"a\\": {"type": "string"}}}},
    "nested": MINIMAL
    | {
        "output_schema": {
            "type": "object",
            "properties": {"a": {"type": "array", "items": {"type": "object", "minimum": 1}}},
        }
    },
    "full_repair": MINIMAL
    | {"repair": {"on_max_tokens": True, "on_invalid": False, "max_tokens_multiplier": 1.5}},
    "bounds": _with_property(type="number", minimum=-1.5, maximum=1e20, enum=[1, 2.5, None]),
    "lengths": _with_property(type="string", minLength=0, maxLength=10),
    "budgets": MINIMAL | {"budget_usd": 0.5, "budget_usd_per_day": 3, "cache_ttl": "5m"},
    # invalid
    "system_empty": MINIMAL | {"system": ""},
    "system_blank": MINIMAL | {"system": "  \n "},
    "system_nul": MINIMAL | {"system": "a\x00b"},
    "prompt_version_blank": MINIMAL | {"prompt_version": "   "},
    "prompt_column_blank": MINIMAL | {"prompt_column": " "},
    "model_blank": MINIMAL | {"model": "  "},
    "cached_prefix_blank": MINIMAL | {"cached_prefix": "\t"},
    "key_blank": MINIMAL | {"primary_key": "  "},
    "key_twice": MINIMAL | {"primary_key": ["a", "a"]},
    "key_empty_list": MINIMAL | {"primary_key": []},
    "key_blank_in_list": MINIMAL | {"primary_key": ["a", " "]},
    "key_nul": MINIMAL | {"primary_key": "a\x00"},
    "unknown_key": MINIMAL | {"max_attempt": 5},
    "nul_in_key_name": MINIMAL | {"sys\x00tem": "x"},
    "minimum_inf": _with_property(type="number", minimum=float("inf")),
    "maximum_nan": _with_property(type="number", maximum=float("nan")),
    "enum_inf": _with_property(type="number", enum=[1, float("-inf")]),
    "enum_nul": _with_property(type="string", enum=["ok", "b\x00d"]),
    "budget_inf": MINIMAL | {"budget_usd": float("inf")},
    "multiplier_inf": MINIMAL | {"repair": {"max_tokens_multiplier": float("inf")}},
    "max_length_sql": _with_property(type="string", maxLength=CANARY),
    "max_length_negative": _with_property(type="string", maxLength=-1),
    "max_length_float": _with_property(type="string", maxLength=5.0),
    "max_length_bool": _with_property(type="string", maxLength=True),
    "minimum_text": _with_property(type="number", minimum="5"),
    "minimum_bool": _with_property(type="number", minimum=True),
    "property_empty_name": MINIMAL
    | {"output_schema": {"type": "object", "properties": {"": {"type": "string"}}}},
    "property_nul_name": MINIMAL
    | {"output_schema": {"type": "object", "properties": {"a\x00": {"type": "string"}}}},
    "property_bool_schema": MINIMAL
    | {"output_schema": {"type": "object", "properties": {"a": True}}},
    "required_missing": MINIMAL | {"output_schema": OBJECT | {"required": ["b"]}},
    "required_text": MINIMAL | {"output_schema": OBJECT | {"required": "a"}},
    "type_unknown": _with_property(type="text"),
    "type_empty": _with_property(type=[]),
    "type_twice": _with_property(type=["string", "string"]),
    "enum_text": _with_property(enum="abc"),
    "schema_array": MINIMAL | {"output_schema": {"type": "array"}},
    "schema_and_tool": MINIMAL | {"output_schema": OBJECT, "tool": TOOL},
    "tool_name_space": MINIMAL | {"tool": TOOL | {"name": "bad name"}},
    "tool_name_newline": MINIMAL | {"tool": TOOL | {"name": "record\n"}},
    "tool_description_blank": MINIMAL | {"tool": TOOL | {"description": " "}},
    "tool_no_schema": MINIMAL | {"tool": {"name": "record"}},
    "cache_ttl": MINIMAL | {"cache_ttl": "10m"},
    "max_tokens_zero": MINIMAL | {"max_tokens": 0},
    "max_tokens_bool": MINIMAL | {"max_tokens": True},
    "max_tokens_float": MINIMAL | {"max_tokens": 1.5},
    "batch_too_big": MINIMAL | {"max_requests_per_batch": 100_001},
    "dedupe_text": MINIMAL | {"dedupe": "yes"},
    "repair_unknown": MINIMAL | {"repair": {"on_truncation": True}},
    "repair_flag_text": MINIMAL | {"repair": {"on_invalid": "yes"}},
    "not_a_mapping": ["primary_key"],
}

PARITY_MACRO = """
{% macro parity_problems() %}
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


def test_the_package_and_the_connector_accept_the_same_declarations(
    tmp_path: Path, dbt: DbtHarness
) -> None:
    project = write_package_project(
        tmp_path, {}, project_vars={"parity_cases": PARITY_CASES}, macros={"parity": PARITY_MACRO}
    )
    # the cases survive the trip through YAML (NUL, infinity, NaN, a backslash)
    assert yaml.safe_load((project / "dbt_project.yml").read_text())["vars"]["parity_cases"][
        "system_nul"
    ] == (MINIMAL | {"system": "a\x00b"})
    env = {"BATCH_ENRICH_TARGET": "duckdb", "BATCH_ENRICH_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    dbt.invoke(["deps"], project, project, env=env)
    dbt.invoke(["run-operation", "parity_problems"], project, project, env=env)

    (said,) = [m for m in dbt.messages if "PARITY {" in m]
    package = json.loads(said[said.index("PARITY ") + len("PARITY ") :])
    assert set(package) == set(PARITY_CASES)
    verdicts = {
        name: (_python_problem(name, decl) is None, package[name] is None)
        for name, decl in PARITY_CASES.items()
    }
    disagree = {
        name: (_python_problem(name, PARITY_CASES[name]), package[name])
        for name, (python_ok, package_ok) in verdicts.items()
        if python_ok != package_ok
    }
    assert disagree == {}
    # both ways are exercised, and every refusal names the model
    assert sum(ok for ok, _ in verdicts.values()) == 11
    assert all(f"model '{n}'" in p for n, p in package.items() if p is not None)


# -- the examples stay out of an installing project unless it asks for them -----------------


@pytest.mark.parametrize(
    ("project_vars", "expected"),
    [
        ({"batch_enrich_examples": False}, False),
        (None, False),
        ({"batch_enrich_ledger_schema": "enrich"}, False),
        ({"batch_enrich_examples": True}, True),
        ({"batch_enrich": {"batch_enrich_examples": True}}, True),
    ],
    ids=["var-false", "no-vars", "var-unset", "var-true", "package-scoped-true"],
)
def test_the_examples_follow_the_installing_projects_var(
    tmp_path: Path, dbt: DbtHarness, project_vars: Mapping[str, Any] | None, expected: bool
) -> None:
    project = write_package_project(tmp_path, {"plain": "select 1 as id\n"}, [], project_vars)
    env = {"BATCH_ENRICH_TARGET": "duckdb", "BATCH_ENRICH_DUCKDB_PATH": str(tmp_path / "w.duckdb")}
    dbt.invoke(["deps"], project, project, env=env)
    dbt.invoke(["parse"], project, project, env=env)

    manifest = json.loads((dbt.target_path / "manifest.json").read_text())
    # (dbt keeps the data tests of a disabled model among the nodes, themselves disabled)
    nodes = [n for n in manifest["nodes"].values() if n["config"]["enabled"]]
    examples = {
        n["unique_id"]
        for n in [*nodes, *manifest["exposures"].values()]
        if n["package_name"] == "batch_enrich"
        and ("examples" in n["original_file_path"] or n["name"].startswith("example_"))
    }
    package_models = {n["name"] for n in nodes if n["package_name"] == "batch_enrich"}
    assert "int_enrich__results_validated" in package_models
    assert "batch_enrich_model_prices" in package_models
    assert "model.installer.plain" in manifest["nodes"]
    if expected:
        assert {
            "model.batch_enrich.ticket_triage",
            "model.batch_enrich.review_aspects__flagged",
            "seed.batch_enrich.example_support_tickets",
            "seed.batch_enrich.example_product_reviews",
            "exposure.batch_enrich.enrich_sync_examples",
        } <= examples
    else:
        assert examples == set()
        # nothing in the project declares an enrichment: the connector finds nothing to pay for
        assert not [n for n in nodes if (n.get("config") or {}).get("meta", {}).get("enrich")]
