"""parse_declaration: every key of docs/architecture.md §1, one row per bad value."""

from __future__ import annotations

from typing import Any

import pytest

from connector.declaration import (
    Declaration,
    DeclarationError,
    RepairPolicy,
    ToolSpec,
    parse_declaration,
)
from connector.errors import ConfigError

MINIMAL: dict[str, Any] = {
    "primary_key": "ticket_id",
    "model": "claude-haiku-4-5",
    "max_tokens": 512,
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["bug", "question"]}},
    "required": ["label"],
    "additionalProperties": False,
}
TOOL: dict[str, Any] = {"name": "classify", "description": "Label it", "input_schema": SCHEMA}


def with_(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def test_minimal_declaration_gets_the_documented_defaults() -> None:
    decl = parse_declaration("ticket_triage", MINIMAL)
    assert decl == Declaration(
        enrichment="ticket_triage",
        primary_key=("ticket_id",),
        model="claude-haiku-4-5",
        max_tokens=512,
        prompt_column="prompt",
        system=None,
        output_schema=None,
        tool=None,
        prompt_version="v1",
        max_attempts=3,
        repair=RepairPolicy(on_max_tokens=False, on_invalid=False, max_tokens_multiplier=2.0),
        max_requests_per_batch=100_000,
        max_batch_bytes=256_000_000,
        flagged_model="ticket_triage__flagged",
        budget_usd=None,
        dedupe=False,
        cache=True,
    )


def test_full_declaration_keeps_every_value() -> None:
    raw = {
        "primary_key": ["tenant_id", "ticket_id"],
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "prompt_column": "user_message",
        "system": "You label support tickets.",
        "tool": TOOL,
        "prompt_version": "v7",
        "max_attempts": 5,
        "repair": {"on_max_tokens": True, "on_invalid": True, "max_tokens_multiplier": 1.5},
        "max_requests_per_batch": 5000,
        "max_batch_bytes": 10_000_000,
        "flagged_model": "triage_todo",
        "budget_usd": 12.5,
        "dedupe": True,
        "cache": False,
    }
    decl = parse_declaration("ticket_triage", raw)
    assert decl.primary_key == ("tenant_id", "ticket_id")
    assert decl.model == "claude-sonnet-4-6"
    assert decl.max_tokens == 2048
    assert decl.prompt_column == "user_message"
    assert decl.system == "You label support tickets."
    assert decl.tool == ToolSpec(name="classify", input_schema=SCHEMA, description="Label it")
    assert decl.output_schema is None
    assert decl.prompt_version == "v7"
    assert decl.max_attempts == 5
    assert decl.repair == RepairPolicy(True, True, 1.5)
    assert decl.max_requests_per_batch == 5000
    assert decl.max_batch_bytes == 10_000_000
    assert decl.flagged_model == "triage_todo"
    assert decl.budget_usd == 12.5
    assert decl.dedupe is True
    assert decl.cache is False


def test_output_schema_declaration() -> None:
    decl = parse_declaration("t", with_(output_schema=SCHEMA))
    assert decl.output_schema == SCHEMA
    assert decl.tool is None


def test_tool_description_is_optional() -> None:
    decl = parse_declaration("t", with_(tool={"name": "x", "input_schema": {"type": "object"}}))
    assert decl.tool == ToolSpec(name="x", input_schema={"type": "object"}, description=None)


@pytest.mark.parametrize(
    "key", ["system", "output_schema", "tool", "budget_usd", "repair", "prompt_column", "cache"]
)
def test_null_optional_keys_mean_not_set(key: str) -> None:
    assert parse_declaration("t", with_(**{key: None})) == parse_declaration("t", MINIMAL)


def test_declaration_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigError):
        parse_declaration("t", with_(max_tokens=0))


def test_error_message_format() -> None:
    with pytest.raises(DeclarationError) as info:
        parse_declaration("ticket_triage", with_(max_tokens="lots"))
    assert str(info.value) == (
        "enrichment 'ticket_triage': meta.enrich.max_tokens must be an integer >= 1, got 'lots'"
    )
    assert info.value.enrichment == "ticket_triage"
    assert info.value.key == "max_tokens"


def _property(**keywords: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": keywords}}


def _nested(**keywords: Any) -> dict[str, Any]:
    """A schema whose property `a` is an array of objects with the property `b`."""
    item = {"type": "object", "properties": {"b": keywords}}
    return {"type": "object", "properties": {"a": {"type": "array", "items": item}}}


BAD = [
    # (raw declaration, key named in the message, words the message must contain)
    ({"model": "m", "max_tokens": 1}, "primary_key", "is required, got nothing"),
    (with_(primary_key=None), "primary_key", "is required, got null"),
    (with_(primary_key=""), "primary_key", "got ''"),
    (with_(primary_key=[]), "primary_key", "got []"),
    (with_(primary_key=42), "primary_key", "got 42"),
    (with_(primary_key=["a", 1]), "primary_key", "got ['a', 1]"),
    (with_(primary_key=["a", "a"]), "primary_key", "duplicates"),
    (with_(primary_key={"a": 1}), "primary_key", "column name"),
    ({"primary_key": "id", "max_tokens": 1}, "model", "is required"),
    (with_(model=""), "model", "non-empty string, got ''"),
    (with_(model=3), "model", "non-empty string, got 3"),
    ({"primary_key": "id", "model": "m"}, "max_tokens", "is required"),
    (with_(max_tokens="lots"), "max_tokens", "integer >= 1, got 'lots'"),
    (with_(max_tokens=0), "max_tokens", "integer >= 1, got 0"),
    (with_(max_tokens=-5), "max_tokens", "got -5"),
    (with_(max_tokens=1.5), "max_tokens", "got 1.5"),
    (with_(max_tokens=True), "max_tokens", "got true"),
    (with_(prompt_column=""), "prompt_column", "non-empty string"),
    (with_(prompt_column=["p"]), "prompt_column", "got ['p']"),
    (with_(system=""), "system", "non-empty string, got ''"),
    (with_(system="   "), "system", "non-empty string"),
    (with_(system=["a"]), "system", "got ['a']"),
    (with_(output_schema="object"), "output_schema", "JSON Schema object"),
    (
        with_(output_schema={"type": "string"}),
        "output_schema",
        '"type": "object", got type \'string\'',
    ),
    (with_(output_schema={"properties": {}}), "output_schema", "got type null"),
    (with_(output_schema={"type": "objekt"}), "output_schema", "valid JSON Schema"),
    (
        with_(output_schema={"type": "object", "properties": {"a": {"type": 5}}}),
        "output_schema",
        "invalid one at properties/a/type",
    ),
    (with_(output_schema={"type": "object", "required": "a"}), "output_schema", "required"),
    (with_(output_schema=SCHEMA, tool=TOOL), "tool", "cannot be combined with output_schema"),
    (with_(tool="classify"), "tool", "must be a mapping"),
    (with_(tool={"input_schema": SCHEMA}), "tool.name", "is required"),
    (with_(tool={**TOOL, "name": "has space"}), "tool.name", "got 'has space'"),
    (with_(tool={**TOOL, "name": "x" * 65}), "tool.name", "^[a-zA-Z0-9_-]{1,64}$"),
    (with_(tool={**TOOL, "name": "naïve"}), "tool.name", "got 'naïve'"),
    (with_(tool={**TOOL, "description": 7}), "tool.description", "got 7"),
    (with_(tool={"name": "x"}), "tool.input_schema", "is required"),
    (with_(tool={**TOOL, "input_schema": {"type": "array"}}), "tool.input_schema", "object"),
    (with_(tool={**TOOL, "input_schema": {"type": 1}}), "tool.input_schema", "valid JSON Schema"),
    (with_(tool={**TOOL, "input_shema": {}}), "tool.input_shema", "did you mean 'input_schema'?"),
    (with_(prompt_version=""), "prompt_version", "non-empty string"),
    (with_(prompt_version=2), "prompt_version", "got 2"),
    (with_(max_attempts=0), "max_attempts", "integer >= 1, got 0"),
    (with_(max_attempts="3"), "max_attempts", "got '3'"),
    (with_(repair=True), "repair", "must be a mapping, got true"),
    (with_(repair={"on_invalid": "yes"}), "repair.on_invalid", "true or false, got 'yes'"),
    (with_(repair={"on_max_tokens": 1}), "repair.on_max_tokens", "true or false, got 1"),
    (with_(repair={"max_tokens_multiplier": 0.5}), "repair.max_tokens_multiplier", ">= 1"),
    (with_(repair={"max_tokens_multiplier": "2"}), "repair.max_tokens_multiplier", "got '2'"),
    (
        with_(repair={"max_tokens_multiplier": float("inf")}),
        "repair.max_tokens_multiplier",
        "got inf",
    ),
    (with_(repair={"on_invalids": True}), "repair.on_invalids", "did you mean 'on_invalid'?"),
    (with_(max_requests_per_batch=0), "max_requests_per_batch", "between 1 and 100000, got 0"),
    (with_(max_requests_per_batch=100_001), "max_requests_per_batch", "got 100001"),
    (with_(max_batch_bytes=0), "max_batch_bytes", "between 1 and 256000000, got 0"),
    (with_(max_batch_bytes=256_000_001), "max_batch_bytes", "got 256000001"),
    (with_(max_batch_bytes="1MB"), "max_batch_bytes", "got '1MB'"),
    (with_(flagged_model=""), "flagged_model", "non-empty string"),
    (with_(budget_usd=0), "budget_usd", "number > 0, got 0"),
    (with_(budget_usd=-1.5), "budget_usd", "got -1.5"),
    (with_(budget_usd="10"), "budget_usd", "got '10'"),
    (with_(budget_usd=float("nan")), "budget_usd", "got nan"),
    (with_(budget_usd=True), "budget_usd", "got true"),
    (with_(dedupe="no"), "dedupe", "true or false, got 'no'"),
    (with_(cache=0), "cache", "true or false, got 0"),
    (with_(max_token=100), "max_token", "did you mean 'max_tokens'?"),
    (with_(max_attempt=5), "max_attempt", "did you mean 'max_attempts'?"),
    (with_(sytem="hi"), "sytem", "did you mean 'system'?"),
    (with_(zzz=1), "zzz", "is not a known key (known: primary_key,"),
    # issue 13, item 6: what the dbt package refuses too (macros/declaration.sql)
    (with_(primary_key="  "), "primary_key", "got '  '"),
    (with_(primary_key=["a", " "]), "primary_key", "got ['a', ' ']"),
    (with_(model="  "), "model", "non-empty string"),
    (with_(prompt_version=" \n "), "prompt_version", "non-empty string"),
    (with_(system="You label\x00 items."), "system", "NUL character"),
    (with_(primary_key=["id\x00"]), "primary_key[0]", "NUL character"),
    (with_(cached_prefix="\ud800"), "cached_prefix", "lone surrogate"),
    (with_(output_schema={**SCHEMA, "description": "a\x00"}), "output_schema.description", "NUL"),
    (
        with_(output_schema=_property(type="number", minimum=float("inf"))),
        "output_schema.properties.a.minimum",
        "must be a finite number, got inf",
    ),
    (
        with_(output_schema=_property(type="number", maximum=float("-inf"))),
        "output_schema.properties.a.maximum",
        "finite",
    ),
    (
        with_(output_schema=_property(type="number", enum=[1, float("nan")])),
        "output_schema.properties.a.enum[1]",
        "got nan",
    ),
    (
        with_(output_schema=_property(type="string", maxLength="(select 1) + 1000")),
        "output_schema",
        "invalid one at properties/a/maxLength",
    ),
    (
        with_(output_schema=_property(type="string", maxLength=5.0)),
        "output_schema.properties.a.maxLength",
        "must be an integer >= 0, got 5.0",
    ),
    (
        with_(output_schema=_property(type="string", minLength=1.0)),
        "output_schema.properties.a.minLength",
        "got 1.0",
    ),
    (
        with_(output_schema={"type": "object", "properties": {"": {"type": "string"}}}),
        "output_schema.properties",
        "empty property name",
    ),
    (
        with_(output_schema={"type": "object", "properties": {"a": True}}),
        "output_schema.properties.a",
        "must be a schema mapping, got true",
    ),
    (
        with_(output_schema={**_property(type="string"), "required": ["b"]}),
        "output_schema.required",
        "names 'b', which is not in properties",
    ),
    (
        with_(tool={**TOOL, "input_schema": _property(type="integer", minimum=float("nan"))}),
        "tool.input_schema.properties.a.minimum",
        "finite",
    ),
    (with_(tool={**TOOL, "description": "  "}), "tool.description", "non-empty string"),
    (with_(budget_usd_per_day=float("inf")), "budget_usd_per_day", "finite"),
    # issue 11, item 5: the same rules at every depth (the package checks nested schemas)
    (
        with_(output_schema=_nested(type="string", maxLength=5.0)),
        "output_schema.properties.a.items.properties.b.maxLength",
        "must be an integer >= 0, got 5.0",
    ),
    (
        with_(output_schema=_nested(type="string", minLength="(select 1)")),
        "output_schema",
        "invalid one at properties/a/items/properties/b/minLength",
    ),
    (
        with_(output_schema=_nested(type="number", minimum=float("inf"))),
        "output_schema.properties.a.items.properties.b.minimum",
        "finite",
    ),
    (
        with_(output_schema=_nested(type="text")),
        "output_schema",
        "invalid one at properties/a/items/properties/b/type",
    ),
    (
        with_(output_schema=_nested(type=["string", "string"])),
        "output_schema",
        "invalid one at properties/a/items/properties/b/type",
    ),
    (
        with_(output_schema=_nested(enum="abc")),
        "output_schema",
        "at properties/a/items/properties/b",
    ),
    (
        with_(output_schema=_nested(maximum="5")),
        "output_schema",
        "at properties/a/items/properties/b",
    ),
    (
        with_(output_schema=_property(type="array", minItems=1.0)),
        "output_schema.properties.a.minItems",
        "must be an integer >= 0, got 1.0",
    ),
    (
        with_(output_schema=_property(type="array", maxItems=-1)),
        "output_schema",
        "invalid one at properties/a/maxItems",
    ),
    (
        with_(output_schema=_nested(type="array", maxItems=True)),
        "output_schema",
        "invalid one at properties/a/items/properties/b/maxItems",
    ),
    (
        with_(output_schema=_property(type="array", items=True)),
        "output_schema.properties.a.items",
        "must be a schema mapping, got true",
    ),
    (
        with_(output_schema=_nested(type="array", items=False)),
        "output_schema.properties.a.items.properties.b.items",
        "must be a schema mapping, got false",
    ),
    (
        with_(output_schema=_property(type="object", properties={"": {"type": "string"}})),
        "output_schema.properties.a.properties",
        "empty property name",
    ),
    (
        with_(output_schema=_property(type="object", properties={"b": False})),
        "output_schema.properties.a.properties.b",
        "must be a schema mapping, got false",
    ),
    (
        with_(output_schema=_property(type="object", properties={}, required=["c"])),
        "output_schema.properties.a.required",
        "names 'c', which is not in properties",
    ),
    (
        with_(output_schema=_property(type="object", required=["c", "c"])),
        "output_schema",
        "invalid one at properties/a/required",
    ),
    (
        with_(
            output_schema=_nested(
                type="object", properties={"c": {"type": "string"}}, required=["d"]
            )
        ),
        "output_schema.properties.a.items.properties.b.required",
        "names 'd', which is not in properties",
    ),
    (
        with_(tool={**TOOL, "input_schema": _nested(type="string", maxLength=2.0)}),
        "tool.input_schema.properties.a.items.properties.b.maxLength",
        "got 2.0",
    ),
    (
        with_(output_schema={**_property(type="string"), "minItems": 0.0}),
        "output_schema.minItems",
        "got 0.0",
    ),
]


@pytest.mark.parametrize(
    ("raw", "key", "words"), BAD, ids=[f"{r[1]}-{i}" for i, r in enumerate(BAD)]
)
def test_bad_values_are_refused_with_a_precise_message(
    raw: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(DeclarationError) as info:
        parse_declaration("ticket_triage", raw)
    message = str(info.value)
    assert message.startswith(f"enrichment 'ticket_triage': meta.enrich.{key} ")
    assert info.value.key == key
    assert words in message


# the example's tool (models/examples/_examples.yml) and a schema with arrays of objects
# inside objects, every keyword the package checks at some depth
REVIEW_ASPECTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "aspects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "aspect": {"type": "string"},
                    "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                },
                "required": ["aspect", "sentiment"],
            },
        }
    },
    "required": ["aspects"],
}
ORDER_AUDIT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "postcode": {"maxLength": 8}},
                    "required": ["city"],
                },
            },
            "required": ["name", "address"],
        },
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "quantity": {"type": ["integer", "null"], "exclusiveMinimum": 0},
                    "tags": {"type": "array", "items": {"enum": ["gift", "bulk", None]}},
                },
                "required": ["quantity"],
            },
        },
    },
    "required": ["customer", "lines"],
}


@pytest.mark.parametrize("schema", [REVIEW_ASPECTS, ORDER_AUDIT], ids=["review", "order"])
def test_nested_schemas_are_accepted_whole(schema: dict[str, Any]) -> None:
    tool = {"name": "record", "input_schema": schema}
    assert parse_declaration("t", with_(output_schema=schema)).output_schema == schema
    assert parse_declaration("t", with_(tool=tool)).tool == ToolSpec("record", schema, None)


def test_a_key_with_a_nul_character_is_refused() -> None:
    with pytest.raises(DeclarationError) as info:
        parse_declaration("t", with_(**{"sys\x00tem": "x"}))
    assert str(info.value) == (
        "enrichment 't': meta.enrich has a key with a NUL character or a lone surrogate: "
        "'sys\\x00tem'; remove it"
    )


@pytest.mark.parametrize("raw", [None, [], "primary_key: id", 5])
def test_a_declaration_must_be_a_mapping(raw: Any) -> None:
    with pytest.raises(DeclarationError, match=r"^enrichment 't': meta.enrich must be a mapping"):
        parse_declaration("t", raw)


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(DeclarationError, match="keys are strings"):
        parse_declaration("t", {**MINIMAL, 1: "x"})  # type: ignore[dict-item]


def test_long_got_values_are_shortened() -> None:
    with pytest.raises(DeclarationError) as info:
        parse_declaration("t", with_(model=["x" * 500]))
    assert len(str(info.value)) < 200
    assert str(info.value).endswith("...")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_requests_per_batch", 1),
        ("max_requests_per_batch", 100_000),
        ("max_batch_bytes", 1),
        ("max_batch_bytes", 256_000_000),
        ("max_attempts", 1),
        ("max_tokens", 1),
        ("budget_usd", 0.01),
        ("budget_usd", 3),
    ],
)
def test_range_edges_are_accepted(key: str, value: int | float) -> None:
    assert getattr(parse_declaration("t", with_(**{key: value})), key) == value


def test_declarations_are_immutable() -> None:
    decl = parse_declaration("t", MINIMAL)
    with pytest.raises(AttributeError):
        decl.max_tokens = 5  # type: ignore[misc]
