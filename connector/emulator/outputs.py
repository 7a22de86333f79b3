"""Result lines: what the emulated model answers for one batch item.

Output is a pure function of (seed, custom_id, params): structured output (a JSON text
valid against `output_config.format.schema`), a forced tool call (input valid against
that tool's `input_schema`), or a short text. Usage follows `tokens`. Only the ids
(`msg_...`, `toolu_...`) and the cache split depend on the batch and on history.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from connector.emulator.errors import error_object
from connector.emulator.faults import FaultSpec, item_fault, output_fault
from connector.emulator.schema_check import violating_variant
from connector.emulator.schema_values import WORDS, Draw, SchemaCompiler
from connector.emulator.tokens import CacheUsage, PromptCache, estimate_input, tokens_for_chars
from connector.emulator.validation import params_problem

SUCCEEDED, ERRORED, CANCELED, EXPIRED = "succeeded", "errored", "canceled", "expired"
_ALPHANUMERIC = str.maketrans("+/", "xZ")
_ITEM_ERRORS = {
    "item_invalid_request": ("invalid_request_error", "Emulated fault: the request was invalid"),
    "item_api_error": ("api_error", "Internal server error"),
    "item_overloaded": ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True)
class ItemResult:
    """One item's result line (as sent), its result type and the fault that shaped it."""

    line: bytes
    result_type: str
    fault: str | None = None


@dataclass(frozen=True)
class BatchContext:
    """What every item of one batch shares while it is processed."""

    batch_id: str
    seed: int
    faults: FaultSpec
    fault_seed: int  # this batch's seed for item and output fault draws
    models: frozenset[str]
    anthropic_version: str | None
    beta: bool
    cache: PromptCache
    now: float
    compiled: dict[bytes, Draw] = field(default_factory=dict)

    def draw_for(self, schema: Mapping[str, Any]) -> Draw:
        """The compiled generator for `schema` (items of a batch usually share one)."""
        key = orjson.dumps(schema)
        draw = self.compiled.get(key)
        if draw is None:
            draw = self.compiled[key] = SchemaCompiler(schema).draw()
        return draw


def base62_id(prefix: str, *parts: str, length: int = 22) -> str:
    """A deterministic id with the API's look: a prefix, then letters and digits."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=24).digest()
    return prefix + base64.b64encode(digest).decode()[:length].translate(_ALPHANUMERIC)


def canceled_line(custom_id: str) -> bytes:
    return b'{"custom_id":"' + custom_id.encode() + b'","result":{"type":"canceled"}}'


def expired_line(custom_id: str) -> bytes:
    return b'{"custom_id":"' + custom_id.encode() + b'","result":{"type":"expired"}}'


def errored_line(custom_id: str, error_type: str, message: str, request_id: str | None) -> bytes:
    result = {"type": ERRORED, "error": error_object(error_type, message, request_id)}
    return orjson.dumps({"custom_id": custom_id, "result": result})


def process_item(ctx: BatchContext, custom_id: str, params: Any) -> ItemResult:
    """The result this item gets if the batch processes it."""
    problem = params_problem(
        params, models=ctx.models, anthropic_version=ctx.anthropic_version, beta=ctx.beta
    )
    if problem:
        request_id = base62_id("req_01", ctx.batch_id, custom_id)
        line = errored_line(custom_id, "invalid_request_error", problem, request_id)
        return ItemResult(line, ERRORED)
    fault = item_fault(ctx.faults, ctx.fault_seed, custom_id)
    if fault == "item_expired":
        return ItemResult(expired_line(custom_id), EXPIRED, fault)
    if fault == "item_canceled":
        return ItemResult(canceled_line(custom_id), CANCELED, fault)
    if fault is not None:
        error_type, error_message = _ITEM_ERRORS[fault]
        request_id = base62_id("req_01", ctx.batch_id, custom_id)
        line = errored_line(custom_id, error_type, error_message, request_id)
        return ItemResult(line, ERRORED, fault)
    message, applied = build_message(ctx, custom_id, params)
    line = orjson.dumps({"custom_id": custom_id, "result": {"type": SUCCEEDED, "message": message}})
    if applied is None and output_fault(ctx.faults, ctx.fault_seed, custom_id) == LONE_SURROGATE:
        line, applied = _with_lone_surrogate(line)
    return ItemResult(line, SUCCEEDED, applied)


LONE_SURROGATE = "output_lone_surrogate"
_TEXT_BLOCK_END = b'","citations":null}'


def _with_lone_surrogate(line: bytes) -> tuple[bytes, str | None]:
    """The line with a `\\ud800` escape (a high surrogate without its low half) at the end
    of its first text block's text, as JSON text may carry it but no UTF-8 string can
    (orjson cannot write it, hence bytes). A line without a text block is left as is.
    Inside a JSON string a quote is escaped, so the first unescaped `","citations":null}`
    is where the text ends."""
    start = line.find(b'"type":"text","text":"')
    end = line.find(_TEXT_BLOCK_END, start) if start >= 0 else -1
    if end < 0:
        return line, None
    return line[:end] + b"\\ud800" + line[end:], LONE_SURROGATE


def _rng(seed: int, custom_id: str, params: Mapping[str, Any]) -> random.Random:
    material = f"{seed}\x1f{custom_id}\x1f".encode() + orjson.dumps(
        params, option=orjson.OPT_SORT_KEYS
    )
    return random.Random(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest()))


def _forced_tool(params: Mapping[str, Any], rng: random.Random) -> dict[str, Any] | None:
    choice = params.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") not in ("tool", "any"):
        return None
    tools = [t for t in params.get("tools") or [] if isinstance(t.get("input_schema"), dict)]
    if choice["type"] == "tool":
        tools = [t for t in tools if t.get("name") == choice.get("name")]
    return rng.choice(tools) if tools else None


def _json_schema(params: Mapping[str, Any]) -> dict[str, Any] | None:
    output_config = params.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        schema = output_format.get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def _prose(rng: random.Random, model: str) -> str:
    count = 8 + int(rng.random() * 17)
    words = " ".join(WORDS[int(rng.random() * len(WORDS))] for _ in range(count))
    return f"Emulated reply from {model}: {words}."


@dataclass
class _Output:
    content: list[dict[str, Any]]
    output_tokens: int
    stop_reason: str
    stop_sequence: str | None = None
    fault: str | None = None


def _tool_output(
    ctx: BatchContext,
    custom_id: str,
    tool: Mapping[str, Any],
    rng: random.Random,
    fault: str | None,
    max_tokens: int,
) -> _Output:
    tool_input: Any = ctx.draw_for(tool["input_schema"])(rng, 0)
    applied = None
    if fault == "output_schema_violation":
        broken = violating_variant(tool_input, tool["input_schema"], keep_object=True)
        if broken is not None:
            tool_input, applied = broken, fault
    output_tokens = tokens_for_chars(len(tool["name"]) + len(orjson.dumps(tool_input)))
    stop_reason = "tool_use"
    if output_tokens > max_tokens:
        # Cut off while writing the call: the input is left empty.
        tool_input, output_tokens, stop_reason = {}, max_tokens, "max_tokens"
    block = {
        "type": "tool_use",
        "id": base62_id("toolu_01", ctx.batch_id, custom_id),
        "name": tool["name"],
        "input": tool_input,
        "caller": {"type": "direct"},
    }
    return _Output([block], output_tokens, stop_reason, fault=applied)


def _text_output(
    ctx: BatchContext,
    params: Mapping[str, Any],
    rng: random.Random,
    fault: str | None,
    forced_tool: bool,
) -> _Output:
    model: str = params["model"]
    schema = _json_schema(params)
    applied: str | None = None
    stop_sequence: str | None = None
    if forced_tool or (schema is not None and fault == "output_not_json"):
        text, applied = _prose(rng, model), "output_not_json"
    elif schema is not None:
        value = ctx.draw_for(schema)(rng, 0)
        if fault == "output_schema_violation":
            broken = violating_variant(value, schema, keep_object=False)
            if broken is not None:
                value, applied = broken, fault
        text = orjson.dumps(value).decode()
    else:
        text, stop_sequence = _apply_stop_sequences(
            _prose(rng, model), params.get("stop_sequences")
        )
    output_tokens = tokens_for_chars(len(text))
    stop_reason = "stop_sequence" if stop_sequence else "end_turn"
    max_tokens: int = params["max_tokens"]
    if output_tokens > max_tokens:
        text, output_tokens, stop_reason = text[: max_tokens * 4], max_tokens, "max_tokens"
        stop_sequence = None
    block = {"type": "text", "text": text, "citations": None}
    return _Output([block], output_tokens, stop_reason, stop_sequence, applied)


def build_message(
    ctx: BatchContext, custom_id: str, params: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The Message object for a succeeded item, and the output fault applied (if any)."""
    rng = _rng(ctx.seed, custom_id, params)
    fault = output_fault(ctx.faults, ctx.fault_seed, custom_id)
    tool = _forced_tool(params, rng)
    if tool is not None and fault != "output_not_json":
        output = _tool_output(ctx, custom_id, tool, rng, fault, params["max_tokens"])
    else:
        output = _text_output(ctx, params, rng, fault, forced_tool=tool is not None)
    usage = ctx.cache.usage(estimate_input(params), ctx.now)
    message = {
        "id": base62_id("msg_01", ctx.batch_id, custom_id),
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": output.content,
        "stop_reason": output.stop_reason,
        "stop_sequence": output.stop_sequence,
        "stop_details": None,
        "usage": usage_object(usage, output.output_tokens),
        "container": None,
    }
    return message, output.fault


def _apply_stop_sequences(text: str, stop_sequences: Any) -> tuple[str, str | None]:
    if not isinstance(stop_sequences, list):
        return text, None
    hits = [(text.find(s), s) for s in stop_sequences if isinstance(s, str) and s and s in text]
    if not hits:
        return text, None
    position, sequence = min(hits)
    return text[:position], sequence


def usage_object(usage: CacheUsage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": usage.creation,
        "cache_read_input_tokens": usage.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.creation_5m,
            "ephemeral_1h_input_tokens": usage.creation_1h,
        },
        "inference_geo": None,
        "output_tokens_details": None,
        "server_tool_use": None,
        "service_tier": "batch",
    }
