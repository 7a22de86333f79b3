"""Every command and every option is documented in --help."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from connector.cli import main

COMMANDS = sorted(main.commands)


def test_the_group_lists_every_command_with_a_summary() -> None:
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0
    for name in ("sync", "status", "cancel", "emulator", "init", "run"):
        assert name in COMMANDS
        assert name in out.output
    assert "Exit codes" in out.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_of_every_command_has_help(name: str) -> None:
    command = main.commands[name]
    assert command.help, f"{name} has no docstring"
    out = CliRunner().invoke(main, [name, "--help"])
    assert out.exit_code == 0, out.output
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help"
            assert param.opts[0] in out.output


def test_a_bad_option_exits_with_usage_code_2() -> None:
    out = CliRunner().invoke(main, ["sync", "--poll-interval", "-1"])
    assert out.exit_code == 2
