"""Every fault kind of the emulator fires observably through the official SDK."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import jsonschema
import pytest

from connector.emulator import EmulatorConfig, FaultSpec, run_emulator
from connector.emulator.runner import EmulatorHandle

SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"enum": ["spam", "ham"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
    "additionalProperties": False,
}


def request(custom_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "messages": [{"role": "user", "content": f"Is message {custom_id} spam?"}],
            **extra,
        },
    }


def structured(custom_id: str) -> dict[str, Any]:
    return request(custom_id, output_config={"format": {"type": "json_schema", "schema": SCHEMA}})


def forced_tool(custom_id: str) -> dict[str, Any]:
    tool = {"name": "classify", "input_schema": SCHEMA}
    return request(custom_id, tools=[tool], tool_choice={"type": "tool", "name": "classify"})


@pytest.fixture
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig(seed=3)) as handle:
        yield handle


@pytest.fixture
def client(emu: EmulatorHandle) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)


def run_batch(client: anthropic.Anthropic, requests: list[dict[str, Any]]) -> list[Any]:
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    while batch.processing_status != "ended":
        batch = client.messages.batches.retrieve(batch.id)
    return list(client.messages.batches.results(batch.id))


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (402, anthropic.APIStatusError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (413, anthropic.APIStatusError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (504, anthropic.InternalServerError),
        (529, anthropic.APIStatusError),
    ],
)
def test_http_faults_answer_with_their_status(
    emu: EmulatorHandle, client: anthropic.Anthropic, status: int, error: type[Exception]
) -> None:
    emu.set_faults(f"http_{status}=1,retry_after=3")
    with pytest.raises(error) as raised:
        client.messages.batches.list()
    assert isinstance(raised.value, anthropic.APIStatusError)
    assert raised.value.status_code == status
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "3"
    assert emu.stats()["faults_fired"] == {f"http_{status}": 1}


def test_endpoint_scoped_faults_leave_other_endpoints_alone(
    emu: EmulatorHandle, client: anthropic.Anthropic
) -> None:
    emu.set_faults("http_529@create=1,http_429@retrieve=1")
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    assert overloaded.value.status_code == 529
    assert emu.stats()["batches_created"] == 0, "a faulted create creates nothing"
    assert client.messages.batches.list().data == []
    emu.set_faults("http_429@retrieve=1")
    batch = client.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    with pytest.raises(anthropic.RateLimitError):
        client.messages.batches.retrieve(batch.id)
    assert client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
    ).input_tokens


def test_the_sdk_retries_injected_errors_and_honours_retry_after(emu: EmulatorHandle) -> None:
    emu.set_faults("http_429@list=1,retry_after=0")
    patient = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=2)
    with pytest.raises(anthropic.RateLimitError):
        patient.messages.batches.list()
    assert emu.stats()["http_requests"]["list"] == 3
    assert emu.stats()["faults_fired"]["http_429"] == 3


def test_create_no_answer_commits_the_batch_but_drops_the_reply(
    emu: EmulatorHandle, client: anthropic.Anthropic
) -> None:
    emu.set_faults("create_no_answer=1")
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.batches.create(requests=[request("a"), request("b")])  # type: ignore[list-item]
    emu.set_faults("")
    listed = client.messages.batches.list().data
    assert len(listed) == 1 and listed[0].request_counts.processing == 2
    stats = emu.stats()
    assert stats["faults_fired"] == {"create_no_answer": 1}
    assert stats["batches"] == [listed[0].id]
    assert stats["requests_by_custom_id"] == {"a": 1, "b": 1}


def test_results_cut_breaks_the_stream_after_some_lines(
    emu: EmulatorHandle, client: anthropic.Anthropic
) -> None:
    requests = [request(f"r{i}") for i in range(40)]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    client.messages.batches.retrieve(batch.id)
    emu.set_faults("results_cut=1")
    received: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for line in client.messages.batches.results(batch.id):
            received.append(line.custom_id)
    assert 1 <= len(received) < 40
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        client.messages.batches.with_streaming_response.results(batch.id) as response,
    ):
        for _ in response.iter_lines():
            pass
    emu.set_faults("")
    assert len(list(client.messages.batches.results(batch.id))) == 40
    assert emu.stats()["faults_fired"] == {"results_cut": 2}


@pytest.mark.parametrize(
    ("kind", "result_type", "error_type"),
    [
        ("item_api_error", "errored", "api_error"),
        ("item_overloaded", "errored", "overloaded_error"),
        ("item_invalid_request", "errored", "invalid_request_error"),
        ("item_expired", "expired", None),
        ("item_canceled", "canceled", None),
    ],
)
def test_item_faults_shape_single_results(
    emu: EmulatorHandle,
    client: anthropic.Anthropic,
    kind: str,
    result_type: str,
    error_type: str | None,
) -> None:
    emu.set_faults(f"{kind}=0.5")
    results = run_batch(client, [request(f"r{i}") for i in range(80)])
    hit = [r for r in results if r.result.type == result_type]
    assert 20 <= len(hit) <= 60
    assert len(hit) + sum(r.result.type == "succeeded" for r in results) == 80
    if error_type:
        assert {r.result.error.error.type for r in hit} == {error_type}
    assert emu.stats()["faults_fired"] == {kind: len(hit)}


def test_item_fates_are_drawn_afresh_for_a_new_batch(
    emu: EmulatorHandle, client: anthropic.Anthropic
) -> None:
    emu.set_faults("item_api_error=0.5")
    requests = [request(f"r{i}") for i in range(60)]
    first = {r.custom_id for r in run_batch(client, requests) if r.result.type == "errored"}
    second = {r.custom_id for r in run_batch(client, requests) if r.result.type == "errored"}
    assert first and second and first != second


def test_output_not_json(emu: EmulatorHandle, client: anthropic.Anthropic) -> None:
    emu.set_faults("output_not_json=1")
    results = run_batch(client, [structured("s"), forced_tool("t"), request("plain")])
    by_id = {r.custom_id: r.result.message for r in results}
    with pytest.raises(json.JSONDecodeError):
        json.loads(by_id["s"].content[0].text)
    assert by_id["t"].content[0].type == "text" and by_id["t"].stop_reason == "end_turn"
    assert emu.stats()["faults_fired"] == {"output_not_json": 2}


def test_output_schema_violation(emu: EmulatorHandle, client: anthropic.Anthropic) -> None:
    emu.set_faults("output_schema_violation=1")
    results = run_batch(client, [structured("s"), forced_tool("t")])
    by_id = {r.custom_id: r.result.message for r in results}
    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert not validator.is_valid(json.loads(by_id["s"].content[0].text))
    assert by_id["t"].content[0].type == "tool_use"
    assert not validator.is_valid(by_id["t"].content[0].input)
    assert emu.stats()["faults_fired"] == {"output_schema_violation": 2}


def test_batch_expire_expires_every_item(emu: EmulatorHandle, client: anthropic.Anthropic) -> None:
    emu.set_faults("batch_expire=1")
    batch = client.messages.batches.create(requests=[request(f"r{i}") for i in range(5)])  # type: ignore[arg-type]
    client.messages.batches.retrieve(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.expired == 5
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"expired"}
    assert emu.stats()["faults_fired"] == {"batch_expire": 1}


@pytest.fixture
def http(emu: EmulatorHandle) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=emu.base_url) as plain:
        yield plain


def test_the_http_test_surface(
    emu: EmulatorHandle, client: anthropic.Anthropic, http: httpx2.Client
) -> None:
    answer = http.post("/_emulator/faults", content=b"http_500@list=1,seed=4")
    assert answer.status_code == 200 and answer.json() == {"faults": "http_500@list=1,seed=4"}
    with pytest.raises(anthropic.InternalServerError):
        client.messages.batches.list()
    assert http.post("/_emulator/faults", json={"spec": ""}).json() == {"faults": ""}
    assert client.messages.batches.list().data == []
    assert http.post("/_emulator/faults", json={"results_cut": 0.5}).status_code == 200
    bad = http.post("/_emulator/faults", content=b"nonsense=1")
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]["message"]

    batch = client.messages.batches.create(requests=[request("a")])  # type: ignore[list-item]
    moved = http.post("/_emulator/clock", json={"advance_seconds": 86_401})
    assert moved.status_code == 200 and moved.json()["clock_offset_seconds"] == 86_401
    assert client.messages.batches.retrieve(batch.id).request_counts.expired == 1
    assert http.post("/_emulator/clock", json={"advance_seconds": -1}).status_code == 400

    stats = http.get("/_emulator/stats").json()
    assert stats["batches_created"] == 1 and stats["requests_received"] == 1
    assert stats["requests_by_custom_id"] == {"a": 1}
    assert stats["faults_fired"] == {"http_500": 1}
    assert stats["batches"] == [batch.id]


def test_the_same_seed_fires_the_same_faults() -> None:
    def pattern() -> list[int]:
        spec = FaultSpec.parse("http_500@list=0.5,seed=21")
        with (
            run_emulator(EmulatorConfig(faults=spec)) as emu,
            httpx2.Client(base_url=emu.base_url, headers={"x-api-key": "k"}) as http,
        ):
            return [http.get("/v1/messages/batches").status_code for _ in range(30)]

    first = pattern()
    assert Counter(first).keys() == {200, 500}
    assert pattern() == first


def test_item_fates_reproduce_with_the_same_seed_and_calls() -> None:
    def fates() -> list[tuple[str, str]]:
        spec = FaultSpec.parse("item_api_error=0.3,item_expired=0.2,batch_expire=0.3,seed=17")
        with run_emulator(EmulatorConfig(faults=spec)) as emu:
            client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
            found = []
            for _ in range(3):
                results = run_batch(client, [request(f"r{i}") for i in range(30)])
                found += sorted((r.custom_id, r.result.type) for r in results)
            return found

    first = fates()
    assert {kind for _, kind in first} >= {"succeeded", "errored", "expired"}
    assert fates() == first
