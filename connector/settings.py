"""Settings of one command, built by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    project_dir: Path = Path()
    profiles_dir: Path | None = None
    target: str | None = None
    select: tuple[str, ...] = ()
    wait: bool = False
    poll_interval: float = 30.0  # at most one retrieve per batch per interval
    dry_run: bool = False
    submit: bool = True  # False: only finish pending work (`enrich run` after a budget stop)
    # An intent whose create outcome is unknown is abandoned only after this long with
    # no batch carrying its marker on the API, counted from when a sync holding the
    # guard first found it unresolved (a create may still be landing on their side).
    reconcile_grace_seconds: float = 120.0
    # how long `enrich sync` waits for another sync of the same ledger to finish
    lock_wait_seconds: float = 0.0
    # Batches created this long before an intent still count as candidates (clock skew).
    clock_skew_seconds: float = 600.0
    create_attempts: int = 5  # 429s honoured before giving up on a create this run
    chunk_rows: int = 2000
    api_timeout: float = 600.0
    max_wait_seconds: float | None = None  # --wait gives up after this long
    # cost controls (docs/costs.md)
    max_usd: float | None = None  # --max-usd: this run commits at most this, in total
    approve_usd: float | None = None  # --approve-usd: replaces every budget for this run
    exact: bool = False  # count every request's tokens instead of a sample
    sample_size: int = 64  # requests counted per enrichment before scaling by bytes
