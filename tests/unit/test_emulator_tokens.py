"""Token estimates and prompt-cache billing, and the emulator's request validation."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.config import DEFAULT_MODELS, EmulatorConfig
from connector.emulator.errors import ApiError
from connector.emulator.tokens import (
    MIN_CACHEABLE_TOKENS,
    PromptCache,
    estimate_input,
    min_cacheable_tokens,
)
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


def cached_params(
    ttl: str | None = None, user: str = USER, model: str = "m", system: str = SYSTEM
) -> dict[str, Any]:
    marker = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {
        "model": model,
        "system": [{"type": "text", "text": system, "cache_control": marker}],
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


# -- minimum cacheable prompt length ---------------------------------------------------


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-haiku-4-5", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-7", 2048),
        ("claude-mythos-preview", 2048),
        ("claude-opus-4-8", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-sonnet-4-6", 1024),
        ("claude-opus-4-1", 1024),
        ("claude-fable-5", 512),
        ("claude-mythos-5", 512),
        ("m", 0),
    ],
)
def test_minimum_cacheable_length_per_model(model: str, minimum: int) -> None:
    assert min_cacheable_tokens(model) == minimum
    assert PromptCache().minimum(model) == minimum


def test_every_known_model_alias_has_a_minimum() -> None:
    undated = {m for m in DEFAULT_MODELS if not m[-8:].isdigit()}
    assert undated - set(MIN_CACHEABLE_TOKENS) == set()


def test_a_prefix_under_the_minimum_is_plain_input_and_never_cached() -> None:
    cache = PromptCache()
    short = cached_params(model="claude-haiku-4-5")  # a 1,000-token prefix; Haiku needs 4,096
    for now in (0.0, 1.0):
        usage = cache.usage(estimate_input(short), now=now)
        assert (usage.creation, usage.read) == (0, 0)
        assert usage.input_tokens == estimate_input(short).total == 1100
    # the same prefix on a model whose minimum it meets is written, then read
    sonnet = cached_params(model="claude-sonnet-4-5", system="s" * 4096)
    assert cache.usage(estimate_input(sonnet), now=2.0).creation_5m == 1024
    assert cache.usage(estimate_input(sonnet), now=3.0).read == 1024


@pytest.mark.parametrize(("chars", "cached"), [(4096 * 4, True), (4096 * 4 - 4, False)])
def test_the_minimum_is_inclusive(chars: int, cached: bool) -> None:
    params = cached_params("1h", model="claude-haiku-4-5", system="s" * chars)
    usage = PromptCache().usage(estimate_input(params), now=0.0)
    assert (usage.creation_1h > 0) is cached
    assert usage.creation_1h + usage.input_tokens == estimate_input(params).total


def test_the_override_replaces_every_models_minimum() -> None:
    lowered = PromptCache(min_tokens=0)
    short = cached_params(model="claude-haiku-4-5")
    assert lowered.usage(estimate_input(short), now=0.0).creation_5m == 1000
    assert lowered.usage(estimate_input(short), now=1.0).read == 1000
    raised = PromptCache(min_tokens=2000)
    assert raised.minimum("claude-fable-5") == 2000
    assert raised.usage(estimate_input(cached_params()), now=0.0).creation == 0


def test_a_negative_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="min_tokens"):
        PromptCache(min_tokens=-1)
    with pytest.raises(ValueError, match="min_cache_tokens"):
        EmulatorConfig(min_cache_tokens=-1)


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
