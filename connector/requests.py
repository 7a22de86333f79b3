"""Flagged row → Message Batches request. Pure: no I/O, no driver, no SDK.

- ``build_params``: the Messages params of one row (model, max_tokens, one user message,
  system prompt, structured output or forced tool), with prompt-cache breakpoints.
- ``encode_request_line``: one ``{"custom_id", "params"}`` element of the batch body's
  ``requests`` array, as compact JSON bytes (no newline, no comma: the writer joins).
- ``check_row`` / ``check_size``: why a row cannot be sent (a rejection reason), or None.
- ``prepare_request``: all of the above for one row, returning the request or the
  rejection, so that one bad row never sinks a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from connector.custom_id import custom_id_for
from connector.declaration import Declaration

#: ``{"requests":[`` + ``]}``: what a batch body adds around its request elements.
BODY_ENVELOPE_BYTES = len(b'{"requests":[]}')
NUL = "\x00"


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
    max_tokens: int | None = None,
    byte_limit: int | None = None,
) -> PreparedRequest | Rejection:
    """One flagged row → its request, or the reason it is rejected.

    ``key`` maps each of ``decl.primary_key``'s columns to the row's value; ``byte_limit``
    defaults to what fits in one batch body of ``decl.max_batch_bytes``.
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
    try:
        custom_id = custom_id_for(list(ordered.values()))
    except (TypeError, ValueError) as exc:
        return Rejection(ordered, f"primary key cannot be encoded: {exc}")
    params = build_params(decl, prompt, max_tokens)
    try:
        line = encode_request_line(custom_id, params)
    except orjson.JSONEncodeError as exc:
        return Rejection(ordered, f"request cannot be encoded as JSON: {exc}")
    limit = request_byte_limit(decl) if byte_limit is None else byte_limit
    reason = check_size(line, limit)
    if reason is not None:
        return Rejection(ordered, reason)
    return PreparedRequest(custom_id=custom_id, params=params, line=line)
