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
from collections.abc import Mapping, Sequence
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


class PreparedRequest:
    """A row ready to be written into a batch body: its custom_id and its line (the
    request element as sent). The params are decoded from the line when asked for."""

    __slots__ = ("custom_id", "line", "max_tokens")

    def __init__(self, custom_id: str, line: bytes, max_tokens: int) -> None:
        self.custom_id = custom_id
        self.line = line
        self.max_tokens = max_tokens  # what is sent (the view's override, or the declaration's)

    @property
    def size(self) -> int:
        return len(self.line)

    @property
    def params(self) -> dict[str, object]:
        """The Messages params, decoded again from the line."""
        params: dict[str, object] = orjson.loads(self.line)["params"]
        return params


@dataclass(frozen=True)
class Rejection:
    """A row that was skipped, and why (reported with its key, never raised)."""

    key: dict[str, Any] = field(hash=False)
    reason: str


#: Stands for the prompt while a line's template is encoded; its JSON text (NULs are
#: escaped) is then cut out, and each row's encoded prompt put in its place.
_PROMPT_SLOT = "\x00batch-enrich prompt slot\x00"
_MAX_TOKENS_MEMO = 1024


class RequestEncoder:
    """``prepare_request`` for the rows of one declaration, at the cost of encoding the
    prompt and the custom_id: the rest of each line (model, system prompt, schemas,
    cache markers) is encoded once per ``max_tokens`` value, and each row's line is
    joined from those bytes, byte for byte what ``encode_request_line`` writes."""

    def __init__(self, decl: Declaration, byte_limit: int | None = None) -> None:
        self.decl = decl
        self.limit = request_byte_limit(decl) if byte_limit is None else byte_limit
        # max_tokens sent -> (the line before the custom_id's JSON, between it and the
        # prompt's JSON, after it); None where the slot is not found exactly once
        self._templates: dict[int, tuple[bytes, bytes, bytes] | None] = {}
        # the view's max_tokens value -> the tokens sent, or the reason it is refused
        self._overrides: dict[tuple[type, object], int | str] = {}

    def _template(self, tokens: int) -> tuple[bytes, bytes, bytes] | None:
        if tokens not in self._templates:
            params = build_params(self.decl, _PROMPT_SLOT, tokens)
            line = encode_request_line("", params)
            slot = orjson.dumps(_PROMPT_SLOT)
            head = b'{"custom_id":""'
            if line.count(slot) != 1 or not line.startswith(head):
                self._templates[tokens] = None
            else:
                before, after = line[len(head) :].split(slot)
                self._templates[tokens] = (b'{"custom_id":', before, after)
        return self._templates[tokens]

    def _tokens(self, value: object) -> int | str:
        """The max_tokens sent for the view's value, or why the value is refused."""
        memo = (type(value), value)
        known = self._overrides.get(memo)
        if known is not None:
            return known
        reason = check_max_tokens(value, self.decl.model, declared=self.decl.max_tokens)
        tokens = _whole_number(value)
        result: int | str = tokens if reason is None and tokens is not None else reason or ""
        if len(self._overrides) < _MAX_TOKENS_MEMO:
            self._overrides[memo] = result
        return result

    def prepare(
        self, values: Sequence[object], prompt: object, max_tokens: object = None
    ) -> PreparedRequest | Rejection:
        """One flagged row (its key values in ``decl.primary_key`` order) → its request,
        or the reason it is rejected."""
        decl = self.decl

        def rejected(reason: str) -> Rejection:
            return Rejection(dict(zip(decl.primary_key, values, strict=True)), reason)

        reason = _check_values(decl.primary_key, values, prompt, decl.prompt_column)
        if reason is not None:
            return rejected(reason)
        assert isinstance(prompt, str)  # _check_values guarantees it
        tokens = decl.max_tokens
        if max_tokens is not None:
            checked = self._tokens(max_tokens)
            if isinstance(checked, str):
                return rejected(checked)
            tokens = checked
        try:
            custom_id = custom_id_for(values)
        except (TypeError, ValueError) as exc:
            return rejected(f"primary key cannot be encoded: {exc}")
        template = self._template(tokens)
        try:
            if template is None:
                line = encode_request_line(custom_id, build_params(decl, prompt, tokens))
            else:
                head, middle, tail = template
                line = b"".join((head, orjson.dumps(custom_id), middle, orjson.dumps(prompt), tail))
        except orjson.JSONEncodeError as exc:
            return rejected(f"request cannot be encoded as JSON: {exc}")
        if len(line) > self.limit:
            return rejected(check_size(line, self.limit) or "")
        return PreparedRequest(custom_id, line, tokens)


def _check_values(
    columns: Sequence[str], values: Sequence[object], prompt: object, prompt_column: str
) -> str | None:
    """``check_row`` for key values given in column order (no dict per row)."""
    for value in values:
        if value is None or (type(value) is str and NUL in value):
            return check_row(dict(zip(columns, values, strict=True)), prompt, prompt_column)
    if type(prompt) is not str or not prompt or prompt.isspace() or NUL in prompt:
        return check_row(dict(zip(columns, values, strict=True)), prompt, prompt_column)
    return None


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
    ``decl.max_batch_bytes``. For many rows, use one ``RequestEncoder``.
    """
    missing = [c for c in decl.primary_key if c not in key]
    if missing:
        raise ValueError(f"row has no value for key column(s) {missing}")
    values = [key[c] for c in decl.primary_key]
    return RequestEncoder(decl, byte_limit).prepare(values, prompt, max_tokens)
