"""The emulator's settings: one frozen object built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from connector.emulator.faults import FaultSpec

# Model ids the spec lists (mid-2026), aliases and dated snapshots alike.
DEFAULT_MODELS: frozenset[str] = frozenset(
    {
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-6",
        "claude-sonnet-5",
        "claude-opus-4-1",
        "claude-opus-4-1-20250805",
        "claude-opus-4-5",
        "claude-opus-4-5-20251101",
        "claude-opus-4-6",
        "claude-opus-4-7",
        "claude-opus-4-8",
        "claude-fable-5",
        "claude-mythos-5",
        "claude-mythos-preview",
    }
)

MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256_000_000


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves.

    The state machine: a batch ends once it has been retrieved more than
    `ended_after_polls` times (default 1: the first retrieve shows `in_progress`, the
    second `ended`), unless `processing_seconds` is set, in which case it ends that many
    (emulated) seconds after `created_at` and retrieves do not matter.

    `min_cache_tokens` replaces every model's minimum cacheable prompt length (None: the
    per-model minimums of `tokens.MIN_CACHEABLE_TOKENS`; 0: any marked prefix is cached),
    so tests can cache short prompts.
    """

    host: str = "127.0.0.1"
    port: int = 0
    faults: FaultSpec = field(default_factory=FaultSpec)
    state_file: Path | None = None
    ended_after_polls: int = 1
    processing_seconds: float | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    max_requests: int = MAX_REQUESTS
    api_key: str | None = None
    seed: int = 0
    models: frozenset[str] = DEFAULT_MODELS
    log_requests: bool = False
    min_cache_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.ended_after_polls < 0:
            raise ValueError("ended_after_polls must be >= 0")
        if self.processing_seconds is not None and self.processing_seconds < 0:
            raise ValueError("processing_seconds must be >= 0")
        if self.max_body_bytes < 1 or self.max_requests < 1:
            raise ValueError("max_body_bytes and max_requests must be >= 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be within 0..65535")
        if self.min_cache_tokens is not None and self.min_cache_tokens < 0:
            raise ValueError("min_cache_tokens must be >= 0")
