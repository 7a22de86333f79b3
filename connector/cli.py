"""The `enrich` command line: thin. Each command parses options, builds settings and
calls one function; rendering is in `connector.render`."""

from __future__ import annotations

import click

from connector import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="enrich")
def main() -> None:
    """batch-enrich: enrich warehouse rows with Claude through the Message Batches API.

    dbt flags the rows; `enrich sync` submits them, keeps a crash-safe ledger in the
    warehouse and lands the raw results exactly once; dbt parses them.
    """


def _register_emulator() -> None:
    # The emulator is a separate server: the connector core never imports it, the CLI
    # only exposes it as a command.
    from connector.emulator.command import emulator_command

    main.add_command(emulator_command)


_register_emulator()
