"""What the emulated model answers, through the official SDK: structured outputs and
tool inputs valid against the requested schemas, truncation at max_tokens, usage
that count_tokens agrees with, and prompt caching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import pytest

from connector.emulator import EmulatorConfig, run_emulator

MODEL = "claude-opus-4-6"
SCHEMAS: dict[str, dict[str, Any]] = {
    "enum_and_bounded_integer": {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["billing", "shipping", "other"]},
            "priority": {"type": "integer", "minimum": 1, "maximum": 3},
        },
        "required": ["category", "priority"],
        "additionalProperties": False,
    },
    "required_and_optional_keys": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 5, "maxLength": 40},
            "subtitle": {"type": "string"},
            "rating": {"type": "number", "exclusiveMinimum": 0, "maximum": 5},
            "published": {"type": "boolean"},
        },
        "required": ["title"],
        "additionalProperties": False,
    },
    "nested_objects": {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1000, "exclusiveMaximum": 10000},
                    "buyer": {
                        "type": "object",
                        "properties": {
                            "country": {"enum": ["DE", "FR", "US"]},
                            "vip": {"type": "boolean"},
                        },
                        "required": ["country"],
                        "additionalProperties": False,
                    },
                },
                "required": ["id", "buyer"],
                "additionalProperties": False,
            }
        },
        "required": ["order"],
        "additionalProperties": False,
    },
    "arrays_of_objects": {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"enum": ["person", "place", "organisation"]},
                        "mentions": {"type": "integer", "minimum": 1},
                    },
                    "required": ["name", "kind"],
                    "additionalProperties": False,
                },
            },
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        },
        "required": ["entities"],
        "additionalProperties": False,
    },
    "defs_and_nullable": {
        "$defs": {
            "money": {
                "type": "object",
                "properties": {"amount": {"type": "number"}, "currency": {"const": "EUR"}},
                "required": ["amount", "currency"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {
            "total": {"$ref": "#/$defs/money"},
            "discount": {"anyOf": [{"$ref": "#/$defs/money"}, {"type": "null"}]},
        },
        "required": ["total", "discount"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def client() -> Iterator[anthropic.Anthropic]:
    # the caching test's ~1,000-token prefix is under claude-opus-4-6's real minimum
    # (4,096); the per-model minimums are tested in tests/unit/test_emulator_tokens.py
    with run_emulator(EmulatorConfig(seed=11, min_cache_tokens=256)) as emu:
        yield anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)


def params(text: str = "Extract the fields.", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def json_output(schema: dict[str, Any]) -> dict[str, Any]:
    return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}


def tool_call(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "tools": [
            {"name": "other", "input_schema": {"type": "object"}},
            {"name": "save", "description": "Save the fields", "input_schema": schema},
        ],
        "tool_choice": {"type": "tool", "name": "save"},
    }


def run(client: anthropic.Anthropic, requests: list[dict[str, Any]]) -> dict[str, Any]:
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    while batch.processing_status != "ended":
        batch = client.messages.batches.retrieve(batch.id)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert {r.type for r in results.values()} == {"succeeded"}
    return {custom_id: result.message for custom_id, result in results.items()}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_structured_outputs_and_tool_inputs_validate(
    client: anthropic.Anthropic, name: str
) -> None:
    schema = SCHEMAS[name]
    requests = [
        {"custom_id": f"json-{i}", "params": params(f"Row {i}", **json_output(schema))}
        for i in range(12)
    ] + [
        {"custom_id": f"tool-{i}", "params": params(f"Row {i}", **tool_call(schema))}
        for i in range(12)
    ]
    messages = run(client, requests)
    validator = jsonschema.Draft202012Validator(schema)
    outputs = []
    for custom_id, message in messages.items():
        assert message.model == MODEL and message.id.startswith("msg_")
        assert message.usage.service_tier == "batch"
        if custom_id.startswith("json-"):
            assert message.stop_reason == "end_turn"
            assert [block.type for block in message.content] == ["text"]
            value = json.loads(message.content[0].text)
        else:
            assert message.stop_reason == "tool_use"
            [block] = message.content
            assert block.type == "tool_use" and block.name == "save"
            assert block.id.startswith("toolu_")
            value = block.input
        problems = [e.message for e in validator.iter_errors(value)]
        assert not problems, (custom_id, value, problems)
        outputs.append(json.dumps(value, sort_keys=True))
    assert len(set(outputs)) > 1, "every request got the same output"


def test_plain_text_and_stop_sequences(client: anthropic.Anthropic) -> None:
    messages = run(
        client,
        [
            {"custom_id": "plain", "params": params()},
            {"custom_id": "stopped", "params": params(stop_sequences=["Emulated reply"])},
        ],
    )
    plain = messages["plain"]
    assert plain.stop_reason == "end_turn" and plain.content[0].text
    assert plain.usage.output_tokens == (len(plain.content[0].text) + 3) // 4
    stopped = messages["stopped"]
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == "Emulated reply" and stopped.content[0].text == ""


def test_a_too_small_max_tokens_truncates_into_invalid_json(client: anthropic.Anthropic) -> None:
    schema = SCHEMAS["arrays_of_objects"]
    tight = {"max_tokens": 4}
    messages = run(
        client,
        [
            {"custom_id": "json", "params": {**params(**json_output(schema)), **tight}},
            {"custom_id": "tool", "params": {**params(**tool_call(schema)), **tight}},
            {"custom_id": "text", "params": {**params(), **tight}},
        ],
    )
    for message in messages.values():
        assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 4
    assert len(messages["json"].content[0].text) == 16
    with pytest.raises(json.JSONDecodeError):
        json.loads(messages["json"].content[0].text)
    assert messages["tool"].content[0].input == {}


def test_outputs_depend_only_on_custom_id_and_params(client: anthropic.Anthropic) -> None:
    schema = SCHEMAS["nested_objects"]
    same = [{"custom_id": "k1", "params": params(**json_output(schema))}]
    first, second = run(client, same)["k1"], run(client, same)["k1"]
    assert first.content[0].text == second.content[0].text
    renamed = run(client, [{"custom_id": "k2", "params": params(**json_output(schema))}])["k2"]
    reworded = run(client, [{"custom_id": "k1", "params": params("Other", **json_output(schema))}])
    assert renamed.content[0].text != first.content[0].text
    assert reworded["k1"].content[0].text != first.content[0].text


def test_count_tokens_agrees_with_billed_input(client: anthropic.Anthropic) -> None:
    schema = SCHEMAS["required_and_optional_keys"]
    system = [{"type": "text", "text": "You label products. " * 50}]
    variants = {
        "plain": params("Label: blue kettle, 1.7 l"),
        "system": params("Label: kettle", system=system),
        "schema": params("Label: kettle", system=system, **json_output(schema)),
        "tools": params("Label: kettle", **tool_call(schema)),
    }
    messages = run(client, [{"custom_id": k, "params": v} for k, v in variants.items()])
    for name, request in variants.items():
        counted = client.messages.count_tokens(
            **{k: v for k, v in request.items() if k != "max_tokens"}
        ).input_tokens
        usage = messages[name].usage
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0
        assert counted == usage.input_tokens, name
    assert messages["schema"].usage.input_tokens > messages["system"].usage.input_tokens


def test_prompt_caching_writes_once_then_reads(client: anthropic.Anthropic) -> None:
    long_system = "You are a meticulous product labeller. " * 100
    cached_system = [
        {"type": "text", "text": long_system, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    requests = [
        {"custom_id": f"c{i}", "params": params(f"Label item {i}", system=cached_system)}
        for i in range(3)
    ]
    first_batch = run(client, requests)
    writes = [m.usage for m in first_batch.values() if m.usage.cache_creation_input_tokens]
    reads = [m.usage for m in first_batch.values() if m.usage.cache_read_input_tokens]
    assert len(writes) == 1 and len(reads) == 2
    prefix = (len(long_system) + 3) // 4
    assert writes[0].cache_creation_input_tokens == prefix
    assert writes[0].cache_creation.ephemeral_1h_input_tokens == prefix
    assert writes[0].cache_creation.ephemeral_5m_input_tokens == 0
    assert reads[0].cache_read_input_tokens == prefix
    assert reads[0].cache_creation.ephemeral_1h_input_tokens == 0

    second_batch = run(client, requests)
    assert all(m.usage.cache_read_input_tokens == prefix for m in second_batch.values())
    top_level = params("Label item 0", system=long_system, cache_control={"type": "ephemeral"})
    message = run(client, [{"custom_id": "top", "params": top_level}])["top"]
    counted = client.messages.count_tokens(
        model=MODEL, system=long_system, messages=top_level["messages"]
    ).input_tokens
    usage = message.usage
    assert usage.input_tokens == 0 and usage.cache_creation.ephemeral_5m_input_tokens == counted
