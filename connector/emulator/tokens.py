"""Token estimates (about four characters a token) and the prompt cache.

Input is read in the order the API builds its prompt: tools, the output schema, the
system prompt, then the messages. A `cache_control` marker on a tool, system block or
message content block ends a cacheable prefix there; a top-level `cache_control` marks
the whole request. The last marker defines the prefix the emulator caches. The first
request with a given prefix writes it (`cache_creation_input_tokens`, split into 1h and
5m parts by the markers' `ttl`), later ones within the TTL read it.

As with the real API, a prefix shorter than the model's minimum cacheable prompt length
(`MIN_CACHEABLE_TOKENS`) is not cached at all: it is billed as plain input, with no
write, no read and no error.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
_MAX_CACHE_ENTRIES = 200_000

#: Minimum cacheable prompt length, in tokens, per model: Anthropic's prompt caching
#: docs, "Cache limitations" (Claude API, Claude Platform on AWS, Google Cloud and
#: Microsoft Foundry; Bedrock documents its own), as published mid-2026. Dated snapshots
#: share their alias's minimum; a model not listed here has none.
MIN_CACHEABLE_TOKENS: Mapping[str, int] = {
    "claude-fable-5": 512,
    "claude-mythos-5": 512,
    "claude-mythos-preview": 2048,
    "claude-opus-4-7": 2048,
    "claude-opus-4-6": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-8": 1024,
    "claude-sonnet-5": 1024,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-opus-4-1": 1024,
    "claude-haiku-4-5": 4096,
}
_SNAPSHOT_SUFFIX = re.compile(r"-\d{8}$")


def min_cacheable_tokens(model: str) -> int:
    """The model's minimum cacheable prompt length (0 when the model is not listed)."""
    return MIN_CACHEABLE_TOKENS.get(_SNAPSHOT_SUFFIX.sub("", model), 0)


def tokens_for_chars(chars: int) -> int:
    return (chars + 3) // 4


@dataclass(frozen=True)
class InputEstimate:
    """Input tokens of one request: the uncached total and its cacheable prefix."""

    total: int
    model: str = ""
    cache_key: bytes | None = None
    prefix_1h: int = 0
    prefix_5m: int = 0

    @property
    def prefix(self) -> int:
        return self.prefix_1h + self.prefix_5m

    @property
    def ttl_seconds(self) -> float:
        return TTL_SECONDS["1h"] if self.prefix_1h else TTL_SECONDS["5m"]


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    creation_5m: int = 0
    creation_1h: int = 0
    read: int = 0

    @property
    def creation(self) -> int:
        return self.creation_5m + self.creation_1h


def _pieces(params: Mapping[str, Any]) -> Iterator[tuple[int, Any, Any]]:
    """(characters, content, cache_control) per block, in prompt order."""
    tools = params.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            encoded = orjson.dumps(tool)
            yield (
                len(encoded),
                encoded,
                tool.get("cache_control") if isinstance(tool, dict) else None,
            )
    output_config = params.get("output_config")
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(output_format, dict) and isinstance(output_format.get("schema"), dict):
        encoded = orjson.dumps(output_format["schema"])
        yield len(encoded), encoded, None
    yield from _content_pieces(params.get("system"))
    messages = params.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                yield from _content_pieces(message.get("content"))


def _content_pieces(content: Any) -> Iterator[tuple[int, Any, Any]]:
    if isinstance(content, str):
        yield len(content), content, None
    elif isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            text = block.get("text")
            if block.get("type") == "text" and isinstance(text, str):
                yield len(text), text, block.get("cache_control")
            else:
                encoded = orjson.dumps(block)
                yield len(encoded), encoded, block.get("cache_control")


def _ttl(marker: Any) -> str:
    ttl = marker.get("ttl") if isinstance(marker, dict) else None
    return ttl if ttl in TTL_SECONDS else "5m"


def estimate_input(params: Mapping[str, Any]) -> InputEstimate:
    """Input tokens of a Messages request, as count_tokens reports and a result bills."""
    chars = 0
    last_1h = 0
    last_any = 0
    marked = False
    for size, _content, marker in _pieces(params):
        chars += size
        if marker:
            marked = True
            last_any = chars
            if _ttl(marker) == "1h":
                last_1h = chars
    top = params.get("cache_control")
    if top:
        marked = True
        last_any = chars
        if _ttl(top) == "1h":
            last_1h = chars
    total = max(1, tokens_for_chars(chars))
    model = str(params.get("model"))
    if not marked or last_any == 0:
        return InputEstimate(total=total, model=model)
    prefix_1h = tokens_for_chars(last_1h)
    prefix_5m = tokens_for_chars(last_any) - prefix_1h
    return InputEstimate(
        total=total,
        model=model,
        cache_key=_prefix_key(params, last_any),
        prefix_1h=prefix_1h,
        prefix_5m=prefix_5m,
    )


def _prefix_key(params: Mapping[str, Any], prefix_chars: int) -> bytes:
    digest = hashlib.blake2b(str(params.get("model")).encode(), digest_size=16)
    seen = 0
    for size, content, _marker in _pieces(params):
        if seen >= prefix_chars:
            break
        digest.update(content.encode() if isinstance(content, str) else content)
        digest.update(b"\x1f")
        seen += size
    return digest.digest()


class PromptCache:
    """Cacheable prefixes seen so far, each valid until its TTL runs out (emulator clock).

    ``min_tokens`` replaces every model's minimum cacheable prompt length (0: cache any
    marked prefix); None keeps the per-model minimums of ``MIN_CACHEABLE_TOKENS``.
    """

    def __init__(self, min_tokens: int | None = None) -> None:
        if min_tokens is not None and min_tokens < 0:
            raise ValueError("min_tokens must be >= 0")
        self.min_tokens = min_tokens
        self._lock = threading.Lock()
        self._expiry: dict[bytes, float] = {}

    def minimum(self, model: str) -> int:
        """The shortest prefix, in tokens, that this cache stores for ``model``."""
        return min_cacheable_tokens(model) if self.min_tokens is None else self.min_tokens

    def usage(self, estimate: InputEstimate, now: float) -> CacheUsage:
        """Bill one request: write the prefix on a miss, read it on a hit; a prefix under
        the model's minimum is plain input and leaves the cache untouched."""
        if estimate.cache_key is None or estimate.prefix < self.minimum(estimate.model):
            return CacheUsage(input_tokens=estimate.total)
        uncached = estimate.total - estimate.prefix
        with self._lock:
            expires = self._expiry.get(estimate.cache_key)
            hit = expires is not None and expires > now
            self._expiry[estimate.cache_key] = max(expires or 0.0, now + estimate.ttl_seconds)
            if len(self._expiry) > _MAX_CACHE_ENTRIES:
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
        if hit:
            return CacheUsage(input_tokens=uncached, read=estimate.prefix)
        return CacheUsage(
            input_tokens=uncached, creation_5m=estimate.prefix_5m, creation_1h=estimate.prefix_1h
        )
