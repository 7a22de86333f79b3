"""Token estimates and prompt-cache billing, and the emulator's request validation."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.config import DEFAULT_MODELS
from connector.emulator.errors import ApiError
from connector.emulator.tokens import PromptCache, estimate_input
from connector.emulator.validation import (
    count_tokens_problem,
    params_problem,
    validate_create_body,
)

SYSTEM = "s" * 4000
USER = "u" * 400


def test_input_tokens_are_about_four_characters_each() -> None:
    params = {"model": "m", "system": SYSTEM, "messages": [{"role": "user", "content": USER}]}
    assert estimate_input(params).total == 1100
    blocks = {
        "model": "m",
        "system": [{"type": "text", "text": SYSTEM}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": USER}]}],
    }
    assert estimate_input(blocks).total == 1100
    with_tools = {**params, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
    assert estimate_input(with_tools).total > 1100


def cached_params(ttl: str | None = None, user: str = USER) -> dict[str, Any]:
    marker = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {
        "model": "m",
        "system": [{"type": "text", "text": SYSTEM, "cache_control": marker}],
        "messages": [{"role": "user", "content": user}],
    }


def test_first_request_writes_the_prefix_and_later_ones_read_it() -> None:
    cache = PromptCache()
    estimate = estimate_input(cached_params())
    first = cache.usage(estimate, now=0.0)
    assert (first.creation_5m, first.creation_1h, first.read) == (1000, 0, 0)
    assert first.input_tokens == 100
    second = cache.usage(estimate_input(cached_params(user="v" * 400)), now=10.0)
    assert (second.creation, second.read, second.input_tokens) == (0, 1000, 100)


def test_cache_entries_expire_after_their_ttl() -> None:
    cache = PromptCache()
    cache.usage(estimate_input(cached_params()), now=0.0)
    assert cache.usage(estimate_input(cached_params()), now=299.0).read == 1000
    assert cache.usage(estimate_input(cached_params()), now=299.0 + 301).creation == 1000
    hour = PromptCache()
    hour.usage(estimate_input(cached_params("1h")), now=0.0)
    assert hour.usage(estimate_input(cached_params("1h")), now=3000.0).read == 1000


def test_one_hour_and_five_minute_breakpoints_split_the_write() -> None:
    params = cached_params("1h")
    params["messages"] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": USER, "cache_control": {"type": "ephemeral"}}],
        }
    ]
    usage = PromptCache().usage(estimate_input(params), now=0.0)
    assert (usage.creation_1h, usage.creation_5m, usage.input_tokens) == (1000, 100, 0)


def test_top_level_cache_control_caches_the_whole_request() -> None:
    params = {
        "model": "m",
        "cache_control": {"type": "ephemeral"},
        "system": SYSTEM,
        "messages": [{"role": "user", "content": USER}],
    }
    usage = PromptCache().usage(estimate_input(params), now=0.0)
    assert (usage.creation_5m, usage.input_tokens) == (1100, 0)


def test_different_prefixes_do_not_share_a_cache_entry() -> None:
    cache = PromptCache()
    cache.usage(estimate_input(cached_params()), now=0.0)
    other = cached_params()
    other["system"][0]["text"] = "t" * 4000
    assert cache.usage(estimate_input(other), now=1.0).creation == 1000


def envelope(*custom_ids: Any) -> dict[str, Any]:
    return {"requests": [{"custom_id": c, "params": {}} for c in custom_ids]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"requests": []}, "at least 1 item"),
        ({}, "requests: Field required"),
        ({"requests": [], "extra": 1}, "extra: Extra inputs are not permitted"),
        (envelope("a", "b", "a"), "'a' is not unique"),
        (envelope("has space"), "'has space' must match"),
        (envelope("x" * 65), "must match"),
        (envelope("ünïcode"), "must match"),
        ({"requests": [{"custom_id": "a"}]}, "requests.0.params: Field required"),
        (envelope("a", "b", "c", "d"), "at most 3 items"),
    ],
)
def test_create_envelope_errors(body: Any, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        validate_create_body(body, max_requests=3)
    assert raised.value.status == 400 and raised.value.error_type == "invalid_request_error"
    assert message in raised.value.message


GOOD = {
    "model": "claude-haiku-4-5",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "x"}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": None}, "model: Field required"),
        ({"messages": None}, "messages: Field required"),
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"model": "claude-imaginary-9"}, "not a model"),
        ({"temperature": 0.2}, "temperature"),
        ({"top_p": 0.9}, "top_p"),
        ({"top_k": 5}, "top_k"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stream": True}, "stream"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"tool_choice": {"type": "tool", "name": "missing"}}, "not in tools"),
        ({"output_config": {"format": {"type": "xml"}}}, "json_schema"),
        ({"unknown_param": 1}, "Extra inputs"),
    ],
)
def test_params_problems_are_found(change: dict[str, Any], message: str) -> None:
    params = {**GOOD, **change}
    params = {k: v for k, v in params.items() if v is not None}
    problem = params_problem(
        params, models=DEFAULT_MODELS, anthropic_version="2026-10-21", beta=False
    )
    assert problem is not None and message in problem


def test_good_params_pass_and_old_api_versions_still_take_temperature() -> None:
    assert params_problem(GOOD, models=DEFAULT_MODELS, anthropic_version=None, beta=False) is None
    warm = {**GOOD, "temperature": 0.5}
    assert (
        params_problem(warm, models=DEFAULT_MODELS, anthropic_version="2023-06-01", beta=False)
        is None
    )
    assert params_problem(warm, models=DEFAULT_MODELS, anthropic_version=None, beta=False)


def test_count_tokens_rejects_max_tokens_and_missing_fields_synchronously() -> None:
    with pytest.raises(ApiError, match="max_tokens: Extra inputs"):
        count_tokens_problem(GOOD, models=DEFAULT_MODELS, beta=False)
    with pytest.raises(ApiError, match="messages: Field required"):
        count_tokens_problem({"model": "claude-haiku-4-5"}, models=DEFAULT_MODELS, beta=False)
    body = {k: v for k, v in GOOD.items() if k != "max_tokens"}
    count_tokens_problem(body, models=DEFAULT_MODELS, beta=False)
