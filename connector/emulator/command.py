"""`enrich emulator`: serve the Message Batches API emulator in the foreground."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from connector.emulator.config import MAX_BODY_BYTES, MAX_REQUESTS, EmulatorConfig
from connector.emulator.faults import FAULT_HELP, FaultSpec
from connector.emulator.runner import EmulatorHandle


def _fault_spec(_ctx: click.Context, _param: click.Parameter, value: str | None) -> FaultSpec:
    try:
        return FaultSpec.parse(value or "")
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _faults_epilog() -> str:
    lines = ["\b", "Fault kinds for --faults (comma-separated kind=probability, 0..1):"]
    for kind, text in FAULT_HELP.items():
        lines.append(f"  {kind:<26}{text}")
    lines += ["", "\b", "Example:"]
    lines.append("  enrich emulator --faults 'http_529@create=0.2,results_cut=0.5,seed=42'")
    return "\n".join(lines)


@click.command("emulator", epilog=_faults_epilog())
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one.",
)  # fmt: skip
@click.option(
    "--faults", "faults", default="", callback=_fault_spec, metavar="SPEC",
    help="Fault injection spec, e.g. 'http_500=0.1,item_api_error=0.05,seed=7' (kinds below).",
)  # fmt: skip
@click.option(
    "--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="SQLite file that keeps batches across restarts (default: memory only).",
)  # fmt: skip
@click.option(
    "--ended-after-polls", default=1, show_default=True, type=click.IntRange(min=0),
    help="A batch shows `ended` once it has been retrieved more than N times "
    "(1: the first retrieve says in_progress, the second ended).",
)  # fmt: skip
@click.option(
    "--processing-seconds", type=click.FloatRange(min=0), default=None,
    help="End batches this many seconds after creation instead (overrides polls).",
)  # fmt: skip
@click.option(
    "--max-body-bytes", default=MAX_BODY_BYTES, show_default=True, type=click.IntRange(min=1),
    help="Larger request bodies get HTTP 413 request_too_large.",
)  # fmt: skip
@click.option(
    "--max-requests", default=MAX_REQUESTS, show_default=True, type=click.IntRange(min=1),
    help="Most requests one batch may hold (more: HTTP 400).",
)  # fmt: skip
@click.option(
    "--api-key", default=None, metavar="KEY",
    help="Require this API key (default: any non-empty key is accepted).",
)  # fmt: skip
@click.option(
    "--seed", default=0, show_default=True, type=int,
    help="Seed for model outputs, result order and faults (a spec's seed= wins for faults).",
)  # fmt: skip
@click.option(
    "--min-cache-tokens", type=click.IntRange(min=0), default=None, metavar="N",
    help="Cache marked prefixes of at least N tokens on every model, instead of each "
    "model's minimum cacheable prompt length (0: cache any marked prefix).",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="Do not log each HTTP request to stderr.")
def emulator_command(
    host: str,
    port: int,
    faults: FaultSpec,
    state_file: Path | None,
    ended_after_polls: int,
    processing_seconds: float | None,
    max_body_bytes: int,
    max_requests: int,
    api_key: str | None,
    seed: int,
    min_cache_tokens: int | None,
    quiet: bool,
) -> None:
    """Serve a local emulator of Anthropic's Message Batches API.

    Endpoints, shapes, validation and the batch state machine follow the official
    spec; model output is deterministic and conforms to the requested JSON Schema or
    tool input schema. Point the SDK at it with ANTHROPIC_BASE_URL (any API key
    works unless --api-key is given). Test endpoints: GET /_emulator/stats,
    POST /_emulator/faults, POST /_emulator/clock. See docs/emulator.md.
    """
    config = EmulatorConfig(
        host=host,
        port=port,
        faults=faults,
        state_file=state_file,
        ended_after_polls=ended_after_polls,
        processing_seconds=processing_seconds,
        max_body_bytes=max_body_bytes,
        max_requests=max_requests,
        api_key=api_key,
        seed=seed,
        log_requests=not quiet,
        min_cache_tokens=min_cache_tokens,
    )
    try:
        handle = EmulatorHandle(config)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from None
    click.echo(f"Message Batches API emulator listening on {handle.base_url}")
    click.echo(f"  export ANTHROPIC_BASE_URL={handle.base_url}")
    click.echo("  export ANTHROPIC_API_KEY=" + (api_key or "any-key"))
    if str(faults):
        click.echo(f"  faults: {faults}")
    click.echo("Press Ctrl+C to stop.")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.suppress(KeyboardInterrupt):
        handle.serve_forever()
    click.echo("stopped")


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)  # unwinds serve_forever, so the state file is closed cleanly
