"""Running dbt in-process, one invocation per project at a time.

dbt is not built for two invocations on one project at once: each rewrites
`target/manifest.json`, `partial_parse.msgpack` and `run_results.json` in place. Two
syncs started together on a project whose ledger does not exist yet both ran
`dbt run-operation batch_enrich.ensure_ledger`, and one failed reading the other's
half-written files (exit 2). So every dbt invocation of the connector, and every read
of the manifest, holds an exclusive file lock in the target directory: concurrent
`enrich` processes take turns; a process killed while holding it lets go with its
death (the kernel drops flock locks with the file descriptor).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from connector.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".batch-enrich-dbt.lock"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# held locks of this process: {lock path: depth}; flock is per open file, so a second
# open() of the same file in this process would wait on itself
_held: dict[Path, int] = {}
_held_guard = threading.Lock()


def target_dir(project_dir: Path, conf: Mapping[str, Any] | None = None) -> Path:
    """dbt's target directory for the project (DBT_TARGET_PATH, else `target-path`)."""
    from_env = os.environ.get("DBT_TARGET_PATH")
    if from_env:
        return project_dir / from_env
    if conf is None:
        try:
            loaded = yaml.safe_load((project_dir / "dbt_project.yml").read_text())
        except (OSError, yaml.YAMLError):
            loaded = None
        conf = loaded if isinstance(loaded, dict) else {}
    return project_dir / str(conf.get("target-path", "target"))


@contextmanager
def project_lock(directory: Path) -> Iterator[None]:
    """Exclusive use of a dbt target directory by this process (re-entrant within it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / LOCK_NAME).resolve()
    with _held_guard:
        depth = _held.get(path, 0)
        if depth:
            _held[path] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_guard:
                _held[path] -= 1
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with _held_guard:
            _held[path] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held[path]


def run_dbt(args: list[str], project_dir: Path, profiles_dir: Path, target: str | None) -> None:
    """Run one dbt command in-process, holding the project's lock; raise ConfigError with
    dbt's errors on failure."""
    from dbt.cli.main import dbtRunner

    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    full = [*args, "--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir)]
    if target:
        full += ["--target", target]
    errors: list[str] = []

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error" and event.info.msg:
            errors.append(_ANSI.sub("", str(event.info.msg)).strip())

    log.info("running dbt %s", " ".join(args))
    with project_lock(target_dir(project_dir)):
        result = dbtRunner(callbacks=[collect]).invoke(["--quiet", *full])
    if not result.success:
        detail = "; ".join(errors[-5:]) or (str(result.exception) if result.exception else "")
        raise ConfigError(f"dbt {' '.join(args)} failed: {detail or 'see dbt logs'}")
