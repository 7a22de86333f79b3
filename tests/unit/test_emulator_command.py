"""`enrich emulator --help` documents every option and every fault kind."""

from __future__ import annotations

import click
from click.testing import CliRunner

from connector.cli import main
from connector.emulator.command import emulator_command
from connector.emulator.faults import FAULT_HELP, NAMED_FAULTS

EXPECTED_OPTIONS = {
    "--host", "--port", "--faults", "--state-file", "--ended-after-polls",
    "--processing-seconds", "--max-body-bytes", "--max-requests", "--api-key", "--seed",
}  # fmt: skip


def help_text() -> str:
    result = CliRunner().invoke(main, ["emulator", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_every_option_is_listed_with_help() -> None:
    text = help_text()
    options = [p for p in emulator_command.params if isinstance(p, click.Option)]
    declared = {name for option in options for name in option.opts}
    assert declared >= EXPECTED_OPTIONS
    for option in options:
        assert option.help, f"{option.opts} has no help"
        for name in option.opts:
            assert name in text
        assert option.help.split()[0] in text


def test_help_explains_the_fault_syntax() -> None:
    text = help_text()
    for kind in NAMED_FAULTS:
        assert kind in text
    for kind in FAULT_HELP:
        assert kind in text
    assert "ANTHROPIC_BASE_URL" in text
    assert "/_emulator/stats" in text


def test_a_bad_fault_spec_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["emulator", "--faults", "http_418=1"])
    assert result.exit_code == 2
    assert "unsupported HTTP status" in result.output
