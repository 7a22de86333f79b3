"""Row → request: params shapes (checked against the official OpenAPI spec), encoding,
fallback hash and row rejections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from harness.openapi import errors as spec_errors
from hypothesis import given
from hypothesis import strategies as st

from connector.custom_id import custom_id_for
from connector.declaration import Declaration, parse_declaration
from connector.requests import (
    BODY_ENVELOPE_BYTES,
    PreparedRequest,
    Rejection,
    build_params,
    check_max_tokens,
    check_row,
    check_size,
    encode_request_line,
    fallback_request_hash,
    model_max_output_tokens,
    prepare_request,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["bug", "question"]}},
    "required": ["label"],
    "additionalProperties": False,
}
BASE: dict[str, Any] = {"primary_key": "ticket_id", "model": "claude-haiku-4-5", "max_tokens": 256}


def decl(**changes: Any) -> Declaration:
    return parse_declaration("ticket_triage", {**BASE, **changes})


PLAIN = decl()
WITH_SCHEMA = decl(system="You label support tickets.", output_schema=SCHEMA)
WITH_TOOL = decl(
    system="You label support tickets.",
    tool={"name": "label_ticket", "description": "Record the label", "input_schema": SCHEMA},
)
UNCACHED = decl(system="Be brief.", cache=False)
PREFIX = "Label guide: bug = something broken; question = a request for help.\n\n"
CACHED_PREFIX = decl(
    system="You label support tickets.", output_schema=SCHEMA, cached_prefix=PREFIX
)
FIVE_MINUTE_PREFIX = decl(system="Be brief.", cache_ttl="5m", cached_prefix=PREFIX)
UNCACHED_PREFIX = decl(system="Be brief.", cache=False, cached_prefix=PREFIX)
COMPOSITE = decl(primary_key=["tenant", "ticket_id"], max_batch_bytes=2000)


def test_plain_params() -> None:
    assert build_params(PLAIN, "Classify: it crashes") == {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Classify: it crashes"}],
    }


def test_schema_params_use_output_config_and_cached_system() -> None:
    params = build_params(WITH_SCHEMA, "p")
    assert params["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert params["system"] == [
        {
            "type": "text",
            "text": "You label support tickets.",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    assert "tools" not in params
    assert "tool_choice" not in params


def test_tool_params_force_the_tool() -> None:
    params = build_params(WITH_TOOL, "p")
    assert params["tools"] == [
        {"name": "label_ticket", "description": "Record the label", "input_schema": SCHEMA}
    ]
    assert params["tool_choice"] == {"type": "tool", "name": "label_ticket"}
    assert "output_config" not in params


def test_tool_without_description_omits_it() -> None:
    d = decl(tool={"name": "t", "input_schema": {"type": "object"}})
    assert build_params(d, "p")["tools"] == [{"name": "t", "input_schema": {"type": "object"}}]


def test_system_is_plain_text_when_cache_is_off() -> None:
    assert build_params(UNCACHED, "p")["system"] == "Be brief."


def markers(value: object) -> list[object]:
    """Every cache_control marker anywhere in the params, in document order."""
    if isinstance(value, dict):
        found = [value["cache_control"]] if "cache_control" in value else []
        return found + [m for v in value.values() for m in markers(v)]
    if isinstance(value, list):
        return [m for v in value for m in markers(v)]
    return []


@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_system_breakpoint_carries_the_declared_ttl(ttl: str) -> None:
    params = build_params(decl(system="Be brief.", cache_ttl=ttl), "p")
    assert params["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": ttl}}
    ]
    assert params["messages"] == [{"role": "user", "content": "p"}]


def test_cached_prefix_is_its_own_cached_block_before_the_prompt() -> None:
    params = build_params(CACHED_PREFIX, "Subject: crash")
    marker = {"type": "ephemeral", "ttl": "1h"}
    assert params["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": PREFIX, "cache_control": marker},
                {"type": "text", "text": "Subject: crash"},
            ],
        }
    ]
    # the system prompt and the prefix: two breakpoints (the API allows four), one ttl
    assert markers(params) == [marker, marker]


def test_cached_prefix_follows_cache_ttl_on_every_marker() -> None:
    params = build_params(FIVE_MINUTE_PREFIX, "p")
    assert markers(params) == [{"type": "ephemeral", "ttl": "5m"}] * 2


def test_cached_prefix_without_a_system_prompt_is_the_only_breakpoint() -> None:
    params = build_params(decl(cached_prefix=PREFIX), "p")
    assert "system" not in params
    assert markers(params) == [{"type": "ephemeral", "ttl": "1h"}]


@pytest.mark.parametrize("declaration", [UNCACHED, UNCACHED_PREFIX], ids=["system", "prefix"])
def test_no_marker_at_all_when_cache_is_off(declaration: Declaration) -> None:
    params = build_params(declaration, "p")
    assert markers(params) == []
    assert b"cache_control" not in encode_request_line("1", params)


def test_uncached_prefix_still_precedes_the_prompt() -> None:
    content = build_params(UNCACHED_PREFIX, "p")["messages"][0]["content"]  # type: ignore[index]
    assert content == [{"type": "text", "text": PREFIX}, {"type": "text", "text": "p"}]


@pytest.mark.parametrize(("override", "expected"), [(None, 256), (512, 512), (1, 1)])
def test_max_tokens_override(override: int | None, expected: int) -> None:
    assert build_params(PLAIN, "p", override)["max_tokens"] == expected


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "512"])
def test_bad_max_tokens_override_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        build_params(PLAIN, "p", bad)


# -- against the official spec ---------------------------------------------------------


@pytest.mark.parametrize(
    "declaration",
    [PLAIN, WITH_SCHEMA, WITH_TOOL, UNCACHED, CACHED_PREFIX, FIVE_MINUTE_PREFIX, UNCACHED_PREFIX],
    ids=[
        "plain",
        "output_schema",
        "tool",
        "uncached_system",
        "cached_prefix",
        "cached_prefix_5m",
        "uncached_prefix",
    ],
)
def test_params_are_valid_create_message_params(declaration: Declaration) -> None:
    params = build_params(declaration, "Classify: the app crashes on start", 1024)
    assert spec_errors("CreateMessageParams", params) == []
    element = json.loads(encode_request_line("ticket-42", params))
    assert spec_errors("MessageBatchIndividualRequestParams", element) == []


@pytest.mark.parametrize(
    ("declaration", "mutate", "where"),
    [
        (WITH_TOOL, lambda p: p["system"][0]["cache_control"].update(ttl="2h"), "system"),
        (WITH_TOOL, lambda p: p["system"][0].update(text=""), "system"),
        (WITH_TOOL, lambda p: p.update(tool_choice={"type": "tool"}), "tool_choice"),
        (WITH_TOOL, lambda p: p["tools"][0].update(name="a b"), "tools"),
        (
            CACHED_PREFIX,
            lambda p: p["messages"][0]["content"][0]["cache_control"].update(ttl="1d"),
            "messages",
        ),
        (WITH_SCHEMA, lambda p: p["output_config"]["format"].update(type="json"), "output_config"),
        (PLAIN, lambda p: p.pop("max_tokens"), "(root)"),
        (PLAIN, lambda p: p.update(extra=1), "(root)"),
    ],
)
def test_the_spec_check_catches_wrong_shapes(
    declaration: Declaration, mutate: Any, where: str
) -> None:
    # Proves the validator above is strict enough to notice our likely mistakes.
    params = json.loads(orjson.dumps(build_params(declaration, "p")))
    mutate(params)
    found = spec_errors("CreateMessageParams", params)
    assert any(e.startswith(where) for e in found), found


@pytest.mark.parametrize("custom_id", ["", "a.b", "x" * 65])
def test_the_spec_check_catches_bad_custom_ids(custom_id: str) -> None:
    element = json.loads(encode_request_line(custom_id, build_params(PLAIN, "p")))
    assert spec_errors("MessageBatchIndividualRequestParams", element) != []


# -- encoding and hashing --------------------------------------------------------------


def test_request_line_is_compact_json_without_newline() -> None:
    params = build_params(PLAIN, 'héllo "quoted"\nline')
    line = encode_request_line("42", params)
    assert json.loads(line) == {"custom_id": "42", "params": params}
    assert b"\n" not in line
    assert b": " not in line and b", " not in line
    assert "héllo".encode() in line


def test_fallback_hash_is_sha256_of_sorted_compact_json() -> None:
    params = {"b": 1, "a": [1, {"d": 2, "c": 3}]}
    expected = hashlib.sha256(b'{"a":[1,{"c":3,"d":2}],"b":1}').hexdigest()
    assert fallback_request_hash(params) == expected


def test_fallback_hash_ignores_key_order_and_sees_every_change() -> None:
    one = build_params(WITH_SCHEMA, "p")
    reordered = dict(reversed(list(one.items())))
    assert fallback_request_hash(one) == fallback_request_hash(reordered)
    assert fallback_request_hash(one) != fallback_request_hash(build_params(WITH_SCHEMA, "q"))
    assert fallback_request_hash(one) != fallback_request_hash(build_params(WITH_SCHEMA, "p", 9))


@given(st.text(), st.integers(1, 100_000))
def test_any_prompt_round_trips_through_the_line(prompt: str, tokens: int) -> None:
    params = build_params(WITH_TOOL, prompt, tokens)
    try:
        line = encode_request_line("id", params)
    except orjson.JSONEncodeError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in prompt)  # lone surrogates only
        return
    assert json.loads(line)["params"]["messages"][0]["content"] == prompt


# -- rejections ----------------------------------------------------------------------

REJECTED_ROWS = [
    # (key, prompt, words the reason must contain)
    ({"ticket_id": None}, "p", "primary key column 'ticket_id' is null"),
    ({"tenant": "a", "ticket_id": None}, "p", "'ticket_id' is null"),
    ({"ticket_id": "a\x00b"}, "p", "primary key column 'ticket_id' contains a NUL"),
    ({"ticket_id": 1}, None, "prompt column 'prompt' is null"),
    ({"ticket_id": 1}, "", "prompt column 'prompt' is empty"),
    ({"ticket_id": 1}, " \n\t", "is empty"),
    ({"ticket_id": 1}, 42, "is not text (got int)"),
    ({"ticket_id": 1}, b"bytes", "is not text (got bytes)"),
    ({"ticket_id": 1}, "ab\x00cd", "contains a NUL character (\\x00) at offset 2"),
]


@pytest.mark.parametrize(("key", "prompt", "words"), REJECTED_ROWS)
def test_check_row_names_the_problem(key: dict[str, Any], prompt: object, words: str) -> None:
    reason = check_row(key, prompt)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize(
    ("key", "prompt"),
    [({"ticket_id": 1}, "p"), ({"a": "x", "b": Decimal("1.5")}, "é\u2028"), ({"k": ""}, "p")],
)
def test_check_row_accepts_good_rows(key: dict[str, Any], prompt: str) -> None:
    assert check_row(key, prompt) is None


def test_check_row_uses_the_declared_prompt_column_name() -> None:
    assert check_row({"id": 1}, None, "user_message") == "prompt column 'user_message' is null"


@pytest.mark.parametrize(
    ("size", "limit", "reason"),
    [
        (10, 10, None),
        (11, 10, "request is 11 bytes, over the limit of 10 bytes"),
        (2_000_001, 2_000_000, "request is 2,000,001 bytes, over the limit of 2,000,000 bytes"),
    ],
)
def test_check_size(size: int, limit: int, reason: str | None) -> None:
    assert check_size(b"x" * size, limit) == reason


# -- prepare_request -------------------------------------------------------------------


def test_prepare_request_builds_id_params_and_line() -> None:
    prepared = prepare_request(WITH_SCHEMA, {"ticket_id": 42}, "Classify it")
    assert isinstance(prepared, PreparedRequest)
    assert prepared.custom_id == "42"
    assert prepared.params == build_params(WITH_SCHEMA, "Classify it")
    assert prepared.line == encode_request_line("42", prepared.params)
    assert prepared.size == len(prepared.line)


def test_prepare_request_orders_composite_keys_as_declared() -> None:
    prepared = prepare_request(COMPOSITE, {"ticket_id": 7, "tenant": "acme", "other": 1}, "p")
    assert isinstance(prepared, PreparedRequest)
    assert prepared.custom_id == custom_id_for(["acme", 7])


def test_prepare_request_sends_the_cached_prefix_in_the_line() -> None:
    prepared = prepare_request(CACHED_PREFIX, {"ticket_id": 1}, "p")
    assert isinstance(prepared, PreparedRequest)
    content = json.loads(prepared.line)["params"]["messages"][0]["content"]
    assert [block["text"] for block in content] == [PREFIX, "p"]


def test_prepare_request_honours_the_max_tokens_override() -> None:
    prepared = prepare_request(PLAIN, {"ticket_id": 1}, "p", max_tokens=999)
    assert isinstance(prepared, PreparedRequest)
    assert prepared.params["max_tokens"] == 999


@pytest.mark.parametrize(
    ("key", "prompt", "words"),
    [
        ({"tenant": None, "ticket_id": 1}, "p", "'tenant' is null"),
        ({"tenant": "a", "ticket_id": 1}, "", "is empty"),
        ({"tenant": b"raw", "ticket_id": 1}, "p", "primary key cannot be encoded"),
        ({"tenant": float("nan"), "ticket_id": 1}, "p", "primary key cannot be encoded"),
        ({"tenant": "a", "ticket_id": 1}, "\ud800", "cannot be encoded as JSON"),
        ({"tenant": "a", "ticket_id": 1}, "x" * 3000, "over the limit of 1,985 bytes"),
    ],
)
def test_prepare_request_rejects_bad_rows_with_their_key(
    key: dict[str, Any], prompt: str, words: str
) -> None:
    rejected = prepare_request(COMPOSITE, key, prompt)
    assert isinstance(rejected, Rejection)
    assert words in rejected.reason
    assert rejected.key == {"tenant": key["tenant"], "ticket_id": key["ticket_id"]}
    assert list(rejected.key) == ["tenant", "ticket_id"]


def test_default_size_limit_is_what_fits_alone_in_a_body() -> None:
    base = prepare_request(COMPOSITE, {"tenant": "a", "ticket_id": 1}, "x")
    assert isinstance(base, PreparedRequest)
    room = COMPOSITE.max_batch_bytes - BODY_ENVELOPE_BYTES - base.size
    fits = prepare_request(COMPOSITE, {"tenant": "a", "ticket_id": 1}, "x" * (1 + room))
    too_big = prepare_request(COMPOSITE, {"tenant": "a", "ticket_id": 1}, "x" * (2 + room))
    assert isinstance(fits, PreparedRequest)
    assert len(b'{"requests":[' + fits.line + b"]}") == COMPOSITE.max_batch_bytes
    assert isinstance(too_big, Rejection)


def test_explicit_byte_limit_wins() -> None:
    rejected = prepare_request(PLAIN, {"ticket_id": 1}, "p", byte_limit=10)
    assert isinstance(rejected, Rejection)
    assert "over the limit of 10 bytes" in rejected.reason


def test_a_missing_key_column_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="tenant"):
        prepare_request(COMPOSITE, {"ticket_id": 1}, "p")


def test_declaration_with_date_keys() -> None:
    d = dataclasses.replace(PLAIN, primary_key=("day",))
    prepared = prepare_request(d, {"day": dt.date(2024, 5, 1)}, "p")
    assert isinstance(prepared, PreparedRequest)
    assert prepared.custom_id == "2024-05-01"


# -- the flagged view's max_tokens -----------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (None, 256),  # null: the declaration's
        (512, 512),
        (1, 1),
        (64_000, 64_000),  # claude-haiku-4-5's limit itself
        (1024.0, 1024),  # a float column holding a whole number
        (Decimal("768"), 768),  # a Postgres numeric column
        (Decimal("768.000"), 768),
    ],
)
def test_view_max_tokens_that_can_be_sent(value: object, sent: int) -> None:
    prepared = prepare_request(PLAIN, {"ticket_id": 1}, "p", max_tokens=value)
    assert isinstance(prepared, PreparedRequest)
    assert prepared.max_tokens == sent
    assert json.loads(prepared.line)["params"]["max_tokens"] == sent


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "is 0 (int)"),
        (-5, "is -5 (int)"),
        (float("nan"), "is nan (float)"),
        (float("inf"), "is inf (float)"),
        (float("-inf"), "is -inf (float)"),
        (2.5, "is 2.5 (float)"),
        (Decimal("NaN"), "is NaN (Decimal)"),
        (Decimal("Infinity"), "is Infinity (Decimal)"),
        (Decimal("12.5"), "is 12.5 (Decimal)"),
        ("512", "is '512' (str)"),
        ("lots", "is 'lots' (str)"),
        (True, "is True (bool)"),
        (64_001, "is 64001 (int), over claude-haiku-4-5's output limit of 64,000 tokens"),
        (10**30, f"is {10**30} (int), over claude-haiku-4-5's output limit"),
    ],
)
def test_view_max_tokens_that_cannot_be_sent_reject_the_row(value: object, shown: str) -> None:
    rejected = prepare_request(PLAIN, {"ticket_id": 7}, "p", max_tokens=value)
    assert isinstance(rejected, Rejection)
    assert rejected.key == {"ticket_id": 7}
    assert f"flagged view column 'max_tokens' {shown}" in rejected.reason
    assert "fix the view's max_tokens" in rejected.reason
    assert "a whole number from 1 to 64,000" in rejected.reason
    assert "declaration's max_tokens (256)" in rejected.reason


def test_unknown_model_has_no_output_ceiling_but_keeps_the_other_rules() -> None:
    other = decl(model="claude-future-9")
    assert model_max_output_tokens("claude-future-9") is None
    assert isinstance(
        prepare_request(other, {"ticket_id": 1}, "p", max_tokens=10**6), PreparedRequest
    )
    rejected = prepare_request(other, {"ticket_id": 1}, "p", max_tokens=0)
    assert isinstance(rejected, Rejection) and "a whole number >= 1" in rejected.reason


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("claude-haiku-4-5", 64_000),
        ("claude-haiku-4-5-20251001", 64_000),
        ("claude-opus-4-6", 128_000),
        ("claude-haiku-4-5-preview", None),  # not a dated id of the alias
        ("claude-haiku-4", None),
    ],
)
def test_model_output_limits_cover_dated_ids(model: str, limit: int | None) -> None:
    assert model_max_output_tokens(model) == limit


def test_check_max_tokens_accepts_what_it_does_not_reject() -> None:
    assert check_max_tokens(100, "claude-haiku-4-5", declared=256) is None
    assert check_max_tokens(100.0, "claude-haiku-4-5", declared=256) is None
