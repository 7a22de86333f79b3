"""Run dbt in-process (``dbtRunner``) from tests, with the noise and the global state fenced.

- telemetry off (``DBT_SEND_ANONYMOUS_USAGE_STATS=false``);
- ``--log-path`` and ``--target-path`` in a per-test temp directory (only passed to the
  sub-commands that accept them), so ``manifest.json`` is at ``runner.target_path``;
- the caller's env vars (e.g. ``pg_db.env``) are set in ``os.environ`` for the duration of
  the call only, because dbt's ``env_var()`` reads ``os.environ``;
- a failed invocation raises an ``AssertionError`` carrying dbt's own messages, unless
  ``expect_fail=True`` (then a *successful* invocation is the error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from dbt.cli.main import cli, dbtRunner, dbtRunnerResult

TELEMETRY_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
_MAX_REPORTED_LINES = 80


def _command_options(args: Sequence[str]) -> set[str]:
    """The option names that dbt's click (sub-)command named by ``args`` accepts."""
    command: Any = cli
    for arg in args:
        if arg.startswith("-"):
            break
        commands = getattr(command, "commands", None)
        if not commands or arg not in commands:
            break
        command = commands[arg]
    return {opt for param in command.params for opt in param.opts}


def _has_option(args: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


class DbtHarness:
    """``invoke()`` dbt in this process and keep what it said for error reports."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.target_path = work_dir / "target"
        self.log_path = work_dir / "logs"
        self.messages: list[str] = []

    def _on_event(self, event: Any) -> None:
        info = event.info
        self.messages.append(f"[{info.level}] {info.name}: {info.msg}")

    def command_line(self, args: Sequence[str], project_dir: Path, profiles_dir: Path) -> list[str]:
        """The full argument list passed to dbt for ``args``."""
        full = list(args)
        accepted = _command_options(args)
        extra = {
            "--project-dir": str(project_dir),
            "--profiles-dir": str(profiles_dir),
            "--log-path": str(self.log_path),
            "--target-path": str(self.target_path),
        }
        for option, value in extra.items():
            if option in accepted and not _has_option(full, option):
                full += [option, value]
        return full

    def invoke(
        self,
        args: Sequence[str],
        project_dir: Path,
        profiles_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        expect_fail: bool = False,
    ) -> dbtRunnerResult:
        full = self.command_line(args, project_dir, profiles_dir)
        start = len(self.messages)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {**TELEMETRY_ENV, **(env or {})}.items():
                patch.setenv(key, value)
            result = dbtRunner(callbacks=[self._on_event]).invoke(full)
        failed = not result.success
        if failed != expect_fail:
            said = self.messages[start:]
            raise AssertionError(
                f"dbt {' '.join(full)} {'succeeded' if result.success else 'failed'}"
                f"{' but was expected to fail' if expect_fail else ''}"
                f"\nexception: {result.exception!r}"
                f"\nresult: {_describe(result.result)}"
                f"\ndbt said (last {_MAX_REPORTED_LINES} lines):\n"
                + "\n".join(said[-_MAX_REPORTED_LINES:])
            )
        return result


def _describe(result: object) -> str:
    """Node-level errors of a RunExecutionResult, or a short repr of anything else."""
    rows = getattr(result, "results", None)
    if rows is None:
        return repr(result)[:500]
    bad = [
        f"{getattr(r.node, 'unique_id', '?')}: {r.status} {r.message}"
        for r in rows
        if str(r.status) in {"error", "fail", "runtime error", "warn"}
    ]
    return "; ".join(bad) or f"{len(rows)} nodes, none failed"
