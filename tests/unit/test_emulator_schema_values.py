"""The emulator's schema-driven values: drawn values validate (jsonschema is the judge),
the small conformance check agrees with jsonschema, and violations really violate."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from connector.emulator.schema_check import conforms, violating_variant
from connector.emulator.schema_values import SchemaCompiler, generate

SEEDS = range(40)

SCHEMAS: dict[str, dict[str, Any]] = {
    "flat_enum_bounds": {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
            "note": {"type": "string"},
        },
        "required": ["sentiment", "urgency"],
        "additionalProperties": False,
    },
    "nested_objects_and_arrays": {
        "type": "object",
        "properties": {
            "customer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 3, "maxLength": 12},
                    "tier": {"enum": ["free", "pro", "enterprise"]},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "tier", "address"],
                "additionalProperties": False,
            },
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 4,
                "items": {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string"},
                        "qty": {"type": "integer", "minimum": 1},
                        "price": {"type": "number", "minimum": 0, "maximum": 999.99},
                    },
                    "required": ["sku", "qty"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["customer", "items"],
        "additionalProperties": False,
    },
    "exclusive_bounds_and_multiples": {
        "type": "object",
        "properties": {
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "offset": {"type": "integer", "exclusiveMinimum": -3, "exclusiveMaximum": 3},
            "only_max": {"type": "integer", "maximum": -1000},
            "step": {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 99},
        },
        "required": ["ratio", "offset", "only_max", "step"],
    },
    "string_lengths_and_formats": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 20, "maxLength": 20},
            "short": {"type": "string", "maxLength": 3},
            "day": {"type": "string", "format": "date"},
            "email": {"type": "string", "format": "email"},
            "uid": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"},
        },
        "required": ["code", "short", "day", "email", "uid", "at"],
        "additionalProperties": False,
    },
    "any_of_one_of_const": {
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
            "either": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]},
            "overlapping": {
                "oneOf": [{"type": "integer", "maximum": 10}, {"type": "integer", "minimum": 5}]
            },
            "version": {"const": "v2"},
        },
        "required": ["maybe", "either", "overlapping", "version"],
        "additionalProperties": False,
    },
    "recursive_refs": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["label"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "all_of_merge": {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]},
        ]
    },
    "nullable_type_list": {
        "type": "object",
        "properties": {"score": {"type": ["integer", "null"], "minimum": 0, "maximum": 9}},
        "required": ["score"],
    },
    "unique_enum_items": {
        "type": "array",
        "items": {"enum": ["red", "green", "blue", "cyan"]},
        "minItems": 3,
        "maxItems": 4,
        "uniqueItems": True,
    },
    "min_properties_with_extra_schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "minProperties": 3,
        "additionalProperties": {"type": "boolean"},
    },
    "tuple_prefix_items": {
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 100}],
        "items": False,
        "minItems": 2,
    },
    "booleans_and_nulls": {
        "type": "object",
        "properties": {"flag": {"type": "boolean"}, "nothing": {"type": "null"}},
        "required": ["flag", "nothing"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_drawn_values_validate_against_their_schema(name: str) -> None:
    schema = SCHEMAS[name]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    draw = SchemaCompiler(schema).draw()
    for seed in SEEDS:
        value = draw(random.Random(seed), 0)
        problems = [e.message for e in validator.iter_errors(value)]
        assert not problems, (seed, value, problems)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_draws_vary_with_the_seed_and_repeat_with_it(name: str) -> None:
    schema = SCHEMAS[name]
    values = [orjson.dumps(generate(schema, random.Random(seed))) for seed in SEEDS]
    assert len(set(values)) > 1, "every seed drew the same value"
    assert values == [orjson.dumps(generate(schema, random.Random(seed))) for seed in SEEDS]


def test_optional_keys_are_sometimes_present_and_sometimes_not() -> None:
    schema = SCHEMAS["flat_enum_bounds"]
    drawn = [generate(schema, random.Random(seed)) for seed in SEEDS]
    with_note = sum("note" in value for value in drawn)
    assert 0 < with_note < len(drawn)
    assert {value["sentiment"] for value in drawn} == {"positive", "negative", "neutral"}


_BOUNDS = SCHEMAS["exclusive_bounds_and_multiples"]
_CHOICES = SCHEMAS["any_of_one_of_const"]
CONFORMANCE_CASES: list[tuple[dict[str, Any], Any]] = [
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive", "urgency": 3}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "happy", "urgency": 3}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive", "urgency": 6}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive"}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive", "urgency": 2, "x": 1}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive", "urgency": True}),
    (SCHEMAS["flat_enum_bounds"], {"sentiment": "positive", "urgency": 2.0}),
    (_BOUNDS, {"ratio": 1, "offset": 0, "only_max": -1e4, "step": 5}),
    (_BOUNDS, {"ratio": 0.5, "offset": 3, "only_max": -1e4, "step": 5}),
    (_BOUNDS, {"ratio": 0.5, "offset": 2, "only_max": -1e4, "step": 7}),
    (_CHOICES, {"maybe": None, "either": 1, "overlapping": 1, "version": "v2"}),
    (_CHOICES, {"maybe": None, "either": 1, "overlapping": 7, "version": "v2"}),
    (_CHOICES, {"maybe": "x", "either": -1, "overlapping": 1, "version": "v1"}),
    (SCHEMAS["recursive_refs"], {"label": "a", "children": [{"label": "b", "children": []}]}),
    (SCHEMAS["recursive_refs"], {"label": "a", "children": [{"children": []}]}),
    (SCHEMAS["unique_enum_items"], ["red", "green", "red"]),
    (SCHEMAS["unique_enum_items"], ["red", "green", "blue"]),
    (SCHEMAS["tuple_prefix_items"], ["a", 100, "extra"]),
    (SCHEMAS["string_lengths_and_formats"]["properties"]["code"], "x" * 21),
    ({"type": "string", "pattern": "^[A-Z]{3}$"}, "ABC"),
    ({"type": "string", "pattern": "^[A-Z]{3}$"}, "abc"),
    ({"not": {"type": "string"}}, 3),
    ({"type": "number"}, False),
]


@pytest.mark.parametrize(("schema", "value"), CONFORMANCE_CASES)
def test_conformance_check_agrees_with_jsonschema(schema: dict[str, Any], value: Any) -> None:
    assert conforms(value, schema, schema) == Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize(
    "name", [n for n in sorted(SCHEMAS) if n not in ("all_of_merge", "recursive_refs")]
)
@pytest.mark.parametrize("keep_object", [False, True])
def test_violating_variants_fail_validation(name: str, keep_object: bool) -> None:
    schema = SCHEMAS[name]
    validator = Draft202012Validator(schema)
    found = 0
    for seed in range(10):
        value = generate(schema, random.Random(seed))
        variant = violating_variant(value, schema, keep_object=keep_object)
        if variant is None:
            continue
        found += 1
        assert not validator.is_valid(variant), (value, variant)
        if keep_object:
            assert isinstance(variant, dict)
    object_schema = schema.get("type") == "object"
    assert found == 10 if (object_schema or not keep_object) else found == 0
