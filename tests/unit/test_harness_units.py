"""Pure parts of the harness: binary discovery, server options, dbt argument building."""

from __future__ import annotations

import glob
import shlex
import shutil
from pathlib import Path

import pytest
from harness import postgres
from harness.dbt_runner import DbtHarness


def _fake_bindir(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        exe = root / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    return root


@pytest.fixture
def no_system_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgres.BINDIR_ENV, raising=False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(glob, "glob", lambda _pattern: [])


@pytest.mark.usefixtures("no_system_postgres")
def test_missing_binaries_say_how_to_install() -> None:
    with pytest.raises(postgres.PostgresHarnessError, match="apt-get install postgresql"):
        postgres.find_bindir()


@pytest.mark.usefixtures("no_system_postgres")
def test_override_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _fake_bindir(tmp_path / "pg" / "bin")
    monkeypatch.setenv(postgres.BINDIR_ENV, str(bindir))
    assert postgres.find_bindir() == bindir


@pytest.mark.usefixtures("no_system_postgres")
def test_newest_debian_version_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = [_fake_bindir(tmp_path / v / "bin") for v in ("9.6", "15", "13")]
    monkeypatch.setattr(glob, "glob", lambda _pattern: [str(d) for d in dirs])
    assert postgres.find_bindir() == tmp_path / "15" / "bin"


@pytest.mark.usefixtures("no_system_postgres")
def test_a_directory_without_executables_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(postgres.BINDIR_ENV, str(empty))
    with pytest.raises(postgres.PostgresHarnessError):
        postgres.find_bindir()


def test_server_options_survive_the_shell() -> None:
    options = postgres._server_options("/tmp/dir with space", 54321)
    words = shlex.split(options)
    pairs = dict(w.split("=", 1) for w in words if w != "-c")
    assert pairs["listen_addresses"] == ""
    assert pairs["unix_socket_directories"] == "/tmp/dir with space"
    assert pairs["port"] == "54321"
    assert {pairs[k] for k in ("fsync", "synchronous_commit", "full_page_writes")} == {"off"}


def test_free_ports_are_usable_numbers() -> None:
    port = postgres.free_port()
    assert 1024 <= port <= 65535


def test_dbt_paths_only_go_to_commands_that_take_them(tmp_path: Path) -> None:
    harness = DbtHarness(tmp_path)
    build = harness.command_line(["build", "--select", "x"], tmp_path / "p", tmp_path / "q")
    assert build[:3] == ["build", "--select", "x"]
    assert build[build.index("--target-path") + 1] == str(harness.target_path)
    assert build[build.index("--log-path") + 1] == str(harness.log_path)
    assert build[build.index("--project-dir") + 1] == str(tmp_path / "p")
    assert build[build.index("--profiles-dir") + 1] == str(tmp_path / "q")
    debug = harness.command_line(["debug"], tmp_path, tmp_path)
    assert "--target-path" not in debug
    assert "--log-path" in debug


def test_dbt_caller_options_are_not_overridden(tmp_path: Path) -> None:
    harness = DbtHarness(tmp_path)
    args = harness.command_line(["run", "--target-path=elsewhere"], tmp_path, tmp_path)
    assert args.count("--target-path") == 0
    assert "--target-path=elsewhere" in args
