"""Flagged row → Message Batches request. Pure: no I/O, no driver, no SDK.

- ``build_params``: the Messages params of one row (model, max_tokens, one user message,
  system prompt, structured output or forced tool), with prompt-cache breakpoints.
- ``encode_request_line``: one ``{"custom_id", "params"}`` element of the batch body's
  ``requests`` array, as compact JSON bytes (no newline, no comma: the writer joins).
- ``check_row`` / ``check_size`` / ``check_max_tokens``: why a row cannot be sent (a
  rejection reason), or None.
- ``prepare_request``: all of the above for one row, returning the request or the
  rejection, so that one bad row never sinks a batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import orjson

from connector.custom_id import custom_id_for
from connector.declaration import Declaration

#: ``{"requests":[`` + ``]}``: what a batch body adds around its request elements.
BODY_ENVELOPE_BYTES = len(b'{"requests":[]}')
NUL = "\x00"

#: The largest ``max_tokens`` each model accepts (Anthropic's models overview; the API
#: answers a larger value with ``invalid_request_error``). A dated id (``...-20251001``)
#: has its alias's limit; a model not listed is not capped here, the API judges it.
MODEL_MAX_OUTPUT_TOKENS: Final[Mapping[str, int]] = {
    "claude-haiku-4-5": 64_000,
    "claude-sonnet-4-5": 64_000,
    "claude-sonnet-4-6": 64_000,
    "claude-opus-4-5": 64_000,
    "claude-opus-4-6": 128_000,
}


def cache_control(decl: Declaration) -> dict[str, str] | None:
    """The breakpoint marker of this declaration, or None when caching is off.

    Every marker of a request carries the same ``ttl`` (``cache_ttl``, default 1 h
    because a batch may take longer than five minutes), so the API's rule that
    longer TTLs come before shorter ones always holds.
    """
    if not decl.cache:
        return None
    return {"type": "ephemeral", "ttl": decl.cache_ttl}


def _user_content(decl: Declaration, prompt: str) -> str | list[dict[str, object]]:
    """The user message: the prompt text, or the shared ``cached_prefix`` block (a cache
    breakpoint when caching is on) followed by the prompt text block."""
    if decl.cached_prefix is None:
        return prompt
    prefix: dict[str, object] = {"type": "text", "text": decl.cached_prefix}
    marker = cache_control(decl)
    if marker is not None:
        prefix["cache_control"] = marker
    return [prefix, {"type": "text", "text": prompt}]


def build_params(
    decl: Declaration, prompt: str, max_tokens: int | None = None
) -> dict[str, object]:
    """The Messages API params for one prompt; ``max_tokens`` overrides the declaration's.

    With ``cache`` on, the system prompt and the ``cached_prefix`` each end a cache
    breakpoint (``cache_control`` with the declaration's ``cache_ttl``); with it off no
    request carries a marker. The declaration's schemas are shared, not copied: do not
    mutate the result.
    """
    tokens = decl.max_tokens if max_tokens is None else max_tokens
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {tokens!r}")
    params: dict[str, object] = {
        "model": decl.model,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": _user_content(decl, prompt)}],
    }
    if decl.system is not None:
        marker = cache_control(decl)
        if marker is not None:
            params["system"] = [{"type": "text", "text": decl.system, "cache_control": marker}]
        else:
            params["system"] = decl.system
    if decl.output_schema is not None:
        params["output_config"] = {"format": {"type": "json_schema", "schema": decl.output_schema}}
    if decl.tool is not None:
        tool: dict[str, object] = {"name": decl.tool.name}
        if decl.tool.description is not None:
            tool["description"] = decl.tool.description
        tool["input_schema"] = decl.tool.input_schema
        params["tools"] = [tool]
        params["tool_choice"] = {"type": "tool", "name": decl.tool.name}
    return params


def encode_request_line(custom_id: str, params: Mapping[str, object]) -> bytes:
    """``{"custom_id":...,"params":...}`` as compact UTF-8 JSON (raises on invalid text)."""
    return orjson.dumps({"custom_id": custom_id, "params": params})


def fallback_request_hash(params: Mapping[str, object]) -> str:
    """SHA-256 hex of the params' canonical JSON (sorted keys, compact).

    Only for a flagged view without a ``request_hash`` column; the package macro's
    hash is the one the flagging logic compares against.
    """
    return hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_row(
    key: Mapping[str, object], prompt: object, prompt_column: str = "prompt"
) -> str | None:
    """Why this row cannot be sent, or None. ``key`` maps key column → value."""
    for column, value in key.items():
        if value is None:
            return f"primary key column {column!r} is null"
        if isinstance(value, str) and NUL in value:
            return (
                f"primary key column {column!r} contains a NUL character (\\x00), "
                "which Postgres text and jsonb cannot store"
            )
    if prompt is None:
        return f"prompt column {prompt_column!r} is null"
    if not isinstance(prompt, str):
        return f"prompt column {prompt_column!r} is not text (got {type(prompt).__name__})"
    if not prompt.strip():
        return f"prompt column {prompt_column!r} is empty"
    if NUL in prompt:
        return (
            f"prompt column {prompt_column!r} contains a NUL character (\\x00) at offset "
            f"{prompt.index(NUL)}, which Postgres jsonb cannot store"
        )
    return None


def model_max_output_tokens(model: str) -> int | None:
    """The largest ``max_tokens`` ``model`` accepts, or None when it is not known here."""
    for alias, limit in MODEL_MAX_OUTPUT_TOKENS.items():
        if model == alias or (model.startswith(alias + "-") and model[len(alias) + 1 :].isdigit()):
            return limit
    return None


def _whole_number(value: object) -> int | None:
    """``value`` as an int if it is a finite whole number (int, float or Decimal, not
    bool), else None. Text is not a number here: a view's column has a type."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def check_max_tokens(value: object, model: str, *, declared: int) -> str | None:
    """Why a flagged view's ``max_tokens`` value cannot be sent, or None.

    A value must be a whole number from 1 to the model's output limit (when known);
    0, a negative, a fraction, NaN, infinity, text or a boolean are refused, naming the
    value and the fix. ``declared`` is the declaration's ``max_tokens`` (what a null
    in the view means).
    """
    limit = model_max_output_tokens(model)
    tokens = _whole_number(value)
    if tokens is not None and tokens >= 1 and (limit is None or tokens <= limit):
        return None
    allowed = "a whole number >= 1" if limit is None else f"a whole number from 1 to {limit:,}"
    shown = repr(value) if isinstance(value, str | bool) else str(value)
    problem = f"flagged view column 'max_tokens' is {shown} ({type(value).__name__})"
    if tokens is not None and limit is not None and tokens > limit:
        problem += f", over {model}'s output limit of {limit:,} tokens"
    return (
        f"{problem}: it must be {allowed}; fix the view's max_tokens, or leave it null to "
        f"send the declaration's max_tokens ({declared})"
    )


def check_size(line: bytes, limit: int) -> str | None:
    """Why an encoded request is too big to send, or None."""
    if len(line) > limit:
        return f"request is {len(line):,} bytes, over the limit of {limit:,} bytes"
    return None


def request_byte_limit(decl: Declaration) -> int:
    """The largest request that fits alone in a batch body of ``decl.max_batch_bytes``."""
    return decl.max_batch_bytes - BODY_ENVELOPE_BYTES


@dataclass(frozen=True)
class PreparedRequest:
    """A row ready to be written into a batch body."""

    custom_id: str
    params: dict[str, object] = field(hash=False)
    line: bytes

    @property
    def size(self) -> int:
        return len(self.line)

    @property
    def max_tokens(self) -> int:
        """The ``max_tokens`` sent (the view's override, or the declaration's)."""
        tokens = self.params["max_tokens"]
        assert isinstance(tokens, int)
        return tokens


@dataclass(frozen=True)
class Rejection:
    """A row that was skipped, and why (reported with its key, never raised)."""

    key: dict[str, Any] = field(hash=False)
    reason: str


def prepare_request(
    decl: Declaration,
    key: Mapping[str, object],
    prompt: object,
    *,
    max_tokens: object = None,
    byte_limit: int | None = None,
) -> PreparedRequest | Rejection:
    """One flagged row → its request, or the reason it is rejected.

    ``key`` maps each of ``decl.primary_key``'s columns to the row's value;
    ``max_tokens`` is the flagged view's value as read (None: the declaration's), checked
    by ``check_max_tokens``; ``byte_limit`` defaults to what fits in one batch body of
    ``decl.max_batch_bytes``.
    """
    key_dict = dict(key)
    missing = [c for c in decl.primary_key if c not in key_dict]
    if missing:
        raise ValueError(f"row has no value for key column(s) {missing}")
    ordered = {c: key_dict[c] for c in decl.primary_key}
    reason = check_row(ordered, prompt, decl.prompt_column)
    if reason is not None:
        return Rejection(ordered, reason)
    assert isinstance(prompt, str)  # check_row guarantees it
    tokens: int | None = None
    if max_tokens is not None:
        reason = check_max_tokens(max_tokens, decl.model, declared=decl.max_tokens)
        if reason is not None:
            return Rejection(ordered, reason)
        tokens = _whole_number(max_tokens)
    try:
        custom_id = custom_id_for(list(ordered.values()))
    except (TypeError, ValueError) as exc:
        return Rejection(ordered, f"primary key cannot be encoded: {exc}")
    params = build_params(decl, prompt, tokens)
    try:
        line = encode_request_line(custom_id, params)
    except orjson.JSONEncodeError as exc:
        return Rejection(ordered, f"request cannot be encoded as JSON: {exc}")
    limit = request_byte_limit(decl) if byte_limit is None else byte_limit
    reason = check_size(line, limit)
    if reason is not None:
        return Rejection(ordered, reason)
    return PreparedRequest(custom_id=custom_id, params=params, line=line)
