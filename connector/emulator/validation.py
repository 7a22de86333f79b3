"""Request validation, as the real API splits it.

At create time only the envelope is checked (HTTP 400): the `requests` list, its size,
each `custom_id` and its uniqueness. Each request's `params` are checked later, while
the batch "processes": a bad one ends as an `errored` result line with
`invalid_request_error`. `count_tokens` checks its body synchronously.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connector.emulator.errors import ApiError

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
SAMPLING_REMOVED_IN = "2026-10-21"
MESSAGE_PARAMS = frozenset(
    {
        "model", "messages", "cache_control", "container", "inference_geo", "max_tokens",
        "metadata", "output_config", "service_tier", "stop_sequences", "stream", "system",
        "temperature", "thinking", "tool_choice", "tools", "top_k", "top_p",
    }
)  # fmt: skip
COUNT_TOKENS_PARAMS = frozenset(
    {"cache_control", "messages", "model", "output_config", "system", "thinking"}
    | {"tool_choice", "tools"}
)
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


def validate_create_body(body: Any, max_requests: int) -> list[tuple[str, Any]]:
    """The (custom_id, params) pairs of a create body; raises ApiError(400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "body: Input should be a valid dictionary")
    for key in body:
        if key != "requests":
            raise ApiError(400, f"{key}: Extra inputs are not permitted")
    requests = body.get("requests")
    if requests is None:
        raise ApiError(400, "requests: Field required")
    if not isinstance(requests, list):
        raise ApiError(400, "requests: Input should be a valid list")
    if not requests:
        raise ApiError(400, "requests: List should have at least 1 item after validation, not 0")
    if len(requests) > max_requests:
        raise ApiError(
            400,
            f"requests: List should have at most {max_requests} items after validation, "
            f"not {len(requests)}",
        )
    pairs: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(requests):
        if not isinstance(item, dict):
            raise ApiError(400, f"requests.{index}: Input should be a valid dictionary")
        custom_id = item.get("custom_id")
        if custom_id is None:
            raise ApiError(400, f"requests.{index}.custom_id: Field required")
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            raise ApiError(
                400,
                f"requests.{index}.custom_id: custom_id {custom_id!r} must match "
                "^[a-zA-Z0-9_-]{1,64}$",
            )
        if custom_id in seen:
            raise ApiError(
                400,
                f"requests.{index}.custom_id: custom_id {custom_id!r} is not unique within "
                "the batch; custom_id values must be unique",
            )
        seen.add(custom_id)
        for key in item:
            if key not in ("custom_id", "params"):
                raise ApiError(400, f"requests.{index}.{key}: Extra inputs are not permitted")
        if "params" not in item:
            raise ApiError(400, f"requests.{index}.params: Field required")
        pairs.append((custom_id, item["params"]))
    return pairs


def sampling_rejected(anthropic_version: str | None) -> bool:
    """API version 2026-10-21 and later reject temperature/top_p/top_k. A request
    without the header is treated as the latest version."""
    return anthropic_version is None or anthropic_version >= SAMPLING_REMOVED_IN


def params_problem(
    params: Any,
    *,
    models: frozenset[str],
    anthropic_version: str | None,
    beta: bool,
) -> str | None:
    """Why a batch item's params would be rejected by the Messages API, or None."""
    if not isinstance(params, dict):
        return "params: Input should be a valid dictionary"
    for key in ("model", "messages", "max_tokens"):
        if key not in params:
            return f"{key}: Field required"
    if not beta:
        for key in params:
            if key not in MESSAGE_PARAMS:
                return f"{key}: Extra inputs are not permitted"
    max_tokens = params["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be an integer greater than or equal to 1"
    if params.get("stream"):
        return "stream: streaming is not supported for requests in a Message Batch"
    return common_problem(params, models=models, anthropic_version=anthropic_version)


def count_tokens_problem(body: Any, *, models: frozenset[str], beta: bool) -> None:
    """Raise ApiError(400) when a count_tokens body would be rejected."""
    if not isinstance(body, dict):
        raise ApiError(400, "body: Input should be a valid dictionary")
    for key in ("model", "messages"):
        if key not in body:
            raise ApiError(400, f"{key}: Field required")
    if not beta:
        for key in body:
            if key not in COUNT_TOKENS_PARAMS:
                raise ApiError(400, f"{key}: Extra inputs are not permitted")
    problem = common_problem(body, models=models, anthropic_version=None, sampling=False)
    if problem:
        raise ApiError(400, problem)


def common_problem(
    params: Mapping[str, Any],
    *,
    models: frozenset[str],
    anthropic_version: str | None,
    sampling: bool = True,
) -> str | None:
    model = params.get("model")
    if not isinstance(model, str) or model not in models:
        return f"model: {model!r} is not a model this API knows"
    if sampling and sampling_rejected(anthropic_version):
        for key in SAMPLING_PARAMS:
            if key in params:
                version = anthropic_version or SAMPLING_REMOVED_IN
                return f"{key}: is not supported with anthropic-version {version}"
    return (
        _messages_problem(params.get("messages"))
        or _system_problem(params.get("system"))
        or _tools_problem(params.get("tools"), params.get("tool_choice"))
        or _output_config_problem(params.get("output_config"))
    )


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: List should have at least 1 item"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{index}: Input should be a valid dictionary"
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(
            isinstance(block, dict) and isinstance(block.get("type"), str) for block in content
        ):
            return f"messages.{index}.content: Input should be a string or a list of blocks"
    return None


def _system_problem(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(
        isinstance(block, dict) and block.get("type") == "text" for block in system
    ):
        return None
    return "system: Input should be a string or a list of text blocks"


def _tools_problem(tools: Any, tool_choice: Any) -> str | None:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        for index, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{index}.name: Field required"
            custom = tool.get("type") in (None, "custom")
            if custom and not isinstance(tool.get("input_schema"), dict):
                return f"tools.{index}.input_schema: Field required"
            names.add(tool["name"])
    if tool_choice is None:
        return None
    if not isinstance(tool_choice, dict) or tool_choice.get("type") not in (
        "auto",
        "any",
        "tool",
        "none",
    ):
        return "tool_choice: Input should be an object with type auto, any, tool or none"
    if tool_choice["type"] == "tool" and tool_choice.get("name") not in names:
        return f"tool_choice.name: tool {tool_choice.get('name')!r} is not in tools"
    if tool_choice["type"] == "any" and not names:
        return "tool_choice: type 'any' requires tools"
    return None


def _output_config_problem(output_config: Any) -> str | None:
    if output_config is None:
        return None
    if not isinstance(output_config, dict):
        return "output_config: Input should be a valid dictionary"
    output_format = output_config.get("format")
    if output_format is None:
        return None
    if not isinstance(output_format, dict) or output_format.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    if not isinstance(output_format.get("schema"), dict):
        return "output_config.format.schema: Input should be a valid dictionary"
    return None
