"""The batch state machine over HTTP: its knobs, the movable clock (expiry, archive),
persistence across restarts, and `enrich emulator` run as a real process."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from connector.emulator import EmulatorConfig, run_emulator
from connector.emulator.persistence import StateFile
from connector.emulator.runner import EmulatorHandle
from connector.emulator.state import Batch

DAY = 24 * 3600


def requests(count: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": f"row {i}"}],
            },
        }
        for i in range(count)
    ]


def sdk(emu: EmulatorHandle) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)


def test_ended_after_polls_counts_retrieves_not_lists() -> None:
    with run_emulator(EmulatorConfig(ended_after_polls=3)) as emu:
        client = sdk(emu)
        batch = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        for _ in range(3):
            assert client.messages.batches.list().data[0].processing_status == "in_progress"
            shown = client.messages.batches.retrieve(batch.id)
            assert shown.processing_status == "in_progress" and shown.results_url is None
            assert shown.request_counts.processing == 4 and shown.request_counts.succeeded == 0
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended" and ended.request_counts.succeeded == 4


def test_processing_seconds_follows_the_movable_clock() -> None:
    with run_emulator(EmulatorConfig(processing_seconds=90)) as emu:
        client = sdk(emu)
        batch = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        for _ in range(3):
            assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        emu.advance_clock(91)
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert ended.ended_at == ended.created_at + timedelta(seconds=90)


def test_cancel_midway_keeps_processed_items() -> None:
    with run_emulator(EmulatorConfig(ended_after_polls=3)) as emu:
        client = sdk(emu)
        batch = client.messages.batches.create(requests=requests(10))  # type: ignore[arg-type]
        client.messages.batches.retrieve(batch.id)
        client.messages.batches.retrieve(batch.id)
        assert client.messages.batches.cancel(batch.id).processing_status == "canceling"
        ended = client.messages.batches.retrieve(batch.id)
        assert ended.processing_status == "ended"
        assert (ended.request_counts.succeeded, ended.request_counts.canceled) == (5, 5)
        kinds = [r.result.type for r in client.messages.batches.results(batch.id)]
        assert sorted(kinds) == ["canceled"] * 5 + ["succeeded"] * 5


def test_expiry_and_archive_follow_created_at() -> None:
    with run_emulator(EmulatorConfig()) as emu:
        client = sdk(emu)
        done = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        client.messages.batches.retrieve(done.id)
        client.messages.batches.retrieve(done.id)
        stale = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        emu.advance_clock(DAY - 60)
        shown = client.messages.batches.list(limit=1).data[0]
        assert shown.id == stale.id and shown.processing_status == "in_progress"
        emu.advance_clock(61)
        expired = client.messages.batches.retrieve(stale.id)
        assert expired.processing_status == "ended" and expired.request_counts.expired == 4
        assert expired.ended_at == expired.expires_at == expired.created_at + timedelta(days=1)
        assert expired.archived_at is None
        assert len(list(client.messages.batches.results(done.id))) == 4

        emu.advance_clock(28 * DAY)
        archived = client.messages.batches.retrieve(done.id)
        assert archived.archived_at == archived.created_at + timedelta(days=29)
        assert archived.results_url is not None
        with pytest.raises(anthropic.NotFoundError, match="archived"):
            list(client.messages.batches.results(done.id))
        assert client.messages.batches.delete(done.id).id == done.id


def test_results_are_not_served_before_the_batch_ends() -> None:
    with run_emulator(EmulatorConfig()) as emu:
        client = sdk(emu)
        batch = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        with pytest.raises(anthropic.AnthropicError, match="results_url"):
            client.messages.batches.results(batch.id)
        with httpx2.Client(base_url=emu.base_url, headers={"x-api-key": "k"}) as http:
            early = http.get(f"/v1/messages/batches/{batch.id}/results")
        assert early.status_code == 404


def test_a_restarted_emulator_keeps_its_batches(tmp_path: Path) -> None:
    state = tmp_path / "emulator.sqlite"
    with run_emulator(EmulatorConfig(state_file=state)) as emu:
        client = sdk(emu)
        done = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        client.messages.batches.retrieve(done.id)
        client.messages.batches.retrieve(done.id)
        before = sorted(r.to_json() for r in client.messages.batches.results(done.id))
        waiting = client.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
        client.messages.batches.cancel(waiting.id)
        emu.advance_clock(3600)
        assert emu.state_file == state

    with run_emulator(EmulatorConfig(state_file=state)) as emu:
        client = sdk(emu)
        assert [b.id for b in client.messages.batches.list()] == [waiting.id, done.id]
        assert sorted(r.to_json() for r in client.messages.batches.results(done.id)) == before
        resumed = client.messages.batches.retrieve(waiting.id)
        assert resumed.processing_status == "ended" and resumed.request_counts.canceled == 2
        assert emu.stats()["clock_offset_seconds"] == 3600


def test_a_batch_interrupted_mid_processing_is_processed_on_restart(tmp_path: Path) -> None:
    state = tmp_path / "emulator.sqlite"
    created = datetime.now().timestamp()
    custom_ids = [r["custom_id"] for r in requests()]
    interrupted = Batch(
        id="msgbatch_01interrupted", created_at=created, custom_ids=custom_ids,
        pending=[r["params"] for r in requests()],
    )  # fmt: skip
    stored = StateFile(state)
    stored.insert(interrupted)
    stored.close()
    with run_emulator(EmulatorConfig(state_file=state)) as emu:
        client = sdk(emu)
        client.messages.batches.retrieve(interrupted.id)
        assert client.messages.batches.retrieve(interrupted.id).request_counts.succeeded == 4
        assert {r.custom_id for r in client.messages.batches.results(interrupted.id)} == set(
            custom_ids
        )


@contextmanager
def cli_emulator(*options: str) -> Iterator[str]:
    command = [sys.executable, "-c", "from connector.cli import main; main()", "emulator"]
    process = subprocess.Popen(
        [*command, "--port", "0", "--quiet", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline() + process.stdout.readline()
        found = re.search(r"export ANTHROPIC_BASE_URL=(http://127\.0\.0\.1:\d+)", banner)
        assert found, banner
        yield found.group(1)
    finally:
        process.terminate()
        # a hang guard (it exits on SIGTERM), generous for a busy machine
        assert process.wait(timeout=900) == 0


def test_the_cli_serves_and_persists(tmp_path: Path) -> None:
    state = str(tmp_path / "cli.sqlite")
    options = ("--state-file", state, "--api-key", "sk-cli", "--ended-after-polls", "0")
    with cli_emulator(*options, "--faults", "item_expired=1") as base_url:
        client = anthropic.Anthropic(base_url=base_url, api_key="sk-cli", max_retries=0)
        batch = client.messages.batches.create(requests=requests())  # type: ignore[arg-type]
        assert client.messages.batches.retrieve(batch.id).request_counts.expired == 4
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(
                base_url=base_url, api_key="other", max_retries=0
            ).messages.batches.list()
    with cli_emulator(*options) as base_url:
        client = anthropic.Anthropic(base_url=base_url, api_key="sk-cli", max_retries=0)
        assert [b.id for b in client.messages.batches.list()] == [batch.id]
        assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"expired"}
