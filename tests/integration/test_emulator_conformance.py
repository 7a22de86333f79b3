"""The emulator speaks the Message Batches API: every endpoint through the official SDK
over real HTTP, every response shape validated against the vendor's OpenAPI spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from harness.openapi import errors as spec_errors

from connector.emulator import EmulatorConfig, run_emulator
from connector.emulator.runner import EmulatorHandle

MODEL = "claude-haiku-4-5"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["a", "b"]}, "score": {"type": "integer", "minimum": 0}},
    "required": ["label", "score"],
    "additionalProperties": False,
}
TOOL = {"name": "record", "input_schema": SCHEMA}


def params(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "Classify: the parcel was late."}],
        **extra,
    }


MIXED_REQUESTS = [
    {"custom_id": "plain", "params": params()},
    {
        "custom_id": "structured",
        "params": params(output_config={"format": {"type": "json_schema", "schema": SCHEMA}}),
    },
    {
        "custom_id": "tool",
        "params": params(tools=[TOOL], tool_choice={"type": "tool", "name": "record"}),
    },
    {"custom_id": "bad-model", "params": params(model="claude-imaginary-1")},
]


def assert_shape(schema_name: str, instance: Any) -> None:
    problems = spec_errors(schema_name, instance)
    assert not problems, f"{schema_name}: {problems}\n{orjson.dumps(instance).decode()[:2000]}"


@pytest.fixture
def emu() -> Iterator[EmulatorHandle]:
    with run_emulator(EmulatorConfig(seed=5)) as handle:
        yield handle


@pytest.fixture
def client(emu: EmulatorHandle) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=emu.base_url, api_key="test-key", max_retries=0)


def create_raw(client: anthropic.Anthropic, requests: list[dict[str, Any]]) -> dict[str, Any]:
    raw = client.messages.batches.with_raw_response.create(requests=requests)  # type: ignore[arg-type]
    assert raw.headers.get("request-id", "").startswith("req_")
    body: dict[str, Any] = raw.http_response.json()
    return body


def end(client: anthropic.Anthropic, batch_id: str) -> dict[str, Any]:
    for _ in range(5):
        body: dict[str, Any] = client.messages.batches.with_raw_response.retrieve(
            batch_id
        ).http_response.json()
        if body["processing_status"] == "ended":
            return body
    raise AssertionError(f"{batch_id} did not end")


def raw_results(client: anthropic.Anthropic, batch_id: str) -> list[dict[str, Any]]:
    with client.messages.batches.with_streaming_response.results(batch_id) as response:
        data = response.read()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert all(lines), "the results file has a blank line"
    return [orjson.loads(line) for line in lines]


def test_a_batch_through_its_whole_life(client: anthropic.Anthropic, emu: EmulatorHandle) -> None:
    created = create_raw(client, MIXED_REQUESTS)
    assert_shape("MessageBatch", created)
    assert created["processing_status"] == "in_progress" and created["results_url"] is None
    assert created["request_counts"] == {
        "processing": 4, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0,
    }  # fmt: skip
    assert created["id"].startswith("msgbatch_")

    first = client.messages.batches.with_raw_response.retrieve(created["id"]).http_response.json()
    assert_shape("MessageBatch", first)
    assert first["processing_status"] == "in_progress"
    ended = client.messages.batches.with_raw_response.retrieve(created["id"]).http_response.json()
    assert_shape("MessageBatch", ended)
    assert ended["processing_status"] == "ended" and ended["ended_at"]
    assert ended["results_url"] == f"{emu.base_url}/v1/messages/batches/{created['id']}/results"
    assert ended["request_counts"] == {
        "processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 0,
    }  # fmt: skip

    lines = raw_results(client, created["id"])
    for line in lines:
        assert_shape("MessageBatchIndividualResponse", line)
    by_id = {line["custom_id"]: line for line in lines}
    assert set(by_id) == {r["custom_id"] for r in MIXED_REQUESTS}
    assert by_id["tool"]["result"]["message"]["content"][0]["type"] == "tool_use"
    assert by_id["bad-model"]["result"]["error"]["error"]["type"] == "invalid_request_error"
    typed = list(client.messages.batches.results(created["id"]))
    assert sorted(r.custom_id for r in typed) == sorted(by_id)

    page = client.messages.batches.with_raw_response.list().http_response.json()
    assert_shape("ListResponse_MessageBatch_", page)
    assert [b["id"] for b in page["data"]] == [created["id"]]

    deleted = client.messages.batches.with_raw_response.delete(created["id"]).http_response.json()
    assert_shape("DeleteMessageBatchResponse", deleted)
    assert deleted == {"id": created["id"], "type": "message_batch_deleted"}
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.batches.retrieve(created["id"])
    assert_shape("ErrorResponse", missing.value.body)
    assert emu.stats()["batches"] == []


def test_result_order_is_shuffled(client: anthropic.Anthropic) -> None:
    requests = [{"custom_id": f"r{i:03d}", "params": params()} for i in range(60)]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    end(client, batch.id)
    order = [line["custom_id"] for line in raw_results(client, batch.id)]
    assert sorted(order) == [r["custom_id"] for r in requests] and order != sorted(order)
    assert order == [line["custom_id"] for line in raw_results(client, batch.id)]


def test_every_result_type_matches_the_spec(
    client: anthropic.Anthropic, emu: EmulatorHandle
) -> None:
    done = client.messages.batches.create(requests=MIXED_REQUESTS)  # type: ignore[arg-type]
    end(client, done.id)
    canceled = client.messages.batches.create(requests=MIXED_REQUESTS)  # type: ignore[arg-type]
    client.messages.batches.cancel(canceled.id)
    expired = client.messages.batches.create(requests=MIXED_REQUESTS)  # type: ignore[arg-type]
    emu.advance_clock(24 * 3600 + 1)
    end(client, canceled.id)
    assert end(client, expired.id)["request_counts"]["expired"] == 4

    seen: dict[str, dict[str, Any]] = {}
    for batch_id in (done.id, canceled.id, expired.id):
        for line in raw_results(client, batch_id):
            assert_shape("MessageBatchIndividualResponse", line)
            seen.setdefault(line["result"]["type"], line)
    assert set(seen) == {"succeeded", "errored", "canceled", "expired"}
    assert_shape("SucceededResult", seen["succeeded"]["result"])
    assert_shape("ErroredResult", seen["errored"]["result"])
    assert_shape("ErrorResponse", seen["errored"]["result"]["error"])
    assert_shape("CanceledResult", seen["canceled"]["result"])
    assert_shape("ExpiredResult", seen["expired"]["result"])
    assert_shape("Message", seen["succeeded"]["result"]["message"])
    assert_shape("Usage", seen["succeeded"]["result"]["message"]["usage"])


@pytest.fixture
def http(emu: EmulatorHandle) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=emu.base_url) as plain:
        yield plain


def test_both_auth_header_styles_and_a_missing_key(http: httpx2.Client) -> None:
    url = "/v1/messages/batches"
    version = {"anthropic-version": "2023-06-01"}
    by_key = http.get(url, headers={"x-api-key": "k1", **version})
    by_bearer = http.get(url, headers={"authorization": "Bearer k2"})
    assert by_key.status_code == by_bearer.status_code == 200
    assert_shape("ListResponse_MessageBatch_", by_key.json())
    anonymous = http.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert_shape("ErrorResponse", anonymous.json())
    assert anonymous.headers["request-id"] == anonymous.json()["request_id"]


def test_a_configured_api_key_is_enforced() -> None:
    with run_emulator(EmulatorConfig(api_key="sk-right")) as emu:
        wrong = anthropic.Anthropic(base_url=emu.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as denied:
            wrong.messages.batches.list()
        assert_shape("ErrorResponse", denied.value.body)
        right = anthropic.Anthropic(base_url=emu.base_url, api_key="sk-right", max_retries=0)
        assert list(right.messages.batches.list()) == []
        with httpx2.Client(base_url=emu.base_url, headers={"x-api-key": "sk-right"}) as http:
            assert http.get("/v1/messages/batches").status_code == 200
            assert http.get("/v1/messages/batches", headers={"x-api-key": "x"}).status_code == 401


def test_list_paging_newest_first(client: anthropic.Anthropic) -> None:
    ids = [
        client.messages.batches.create(requests=MIXED_REQUESTS[:1]).id  # type: ignore[arg-type]
        for _ in range(5)
    ]
    newest_first = ids[::-1]
    first = client.messages.batches.with_raw_response.list(limit=2).http_response.json()
    assert_shape("ListResponse_MessageBatch_", first)
    assert [b["id"] for b in first["data"]] == newest_first[:2] and first["has_more"]
    assert (first["first_id"], first["last_id"]) == (newest_first[0], newest_first[1])
    after = client.messages.batches.list(limit=2, after_id=first["last_id"])
    assert [b.id for b in after.data] == newest_first[2:4] and after.has_more
    last = client.messages.batches.list(limit=2, after_id=after.last_id)
    assert [b.id for b in last.data] == newest_first[4:] and not last.has_more
    before = client.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in before.data] == newest_first[2:4] and before.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first
    empty = client.messages.batches.with_raw_response.list(
        after_id=newest_first[-1]
    ).http_response.json()
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize(
    "query", [{"limit": 0}, {"limit": 1001}, {"before_id": "msgbatch_a", "after_id": "msgbatch_b"}]
)
def test_bad_list_parameters_are_rejected(
    client: anthropic.Anthropic, query: dict[str, Any]
) -> None:
    with pytest.raises(anthropic.BadRequestError) as rejected:
        client.messages.batches.list(**query)
    assert_shape("ErrorResponse", rejected.value.body)


def test_cancel_and_delete_rules(client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=MIXED_REQUESTS)  # type: ignore[arg-type]
    with pytest.raises(anthropic.BadRequestError) as too_early:
        client.messages.batches.delete(batch.id)
    assert_shape("ErrorResponse", too_early.value.body)
    assert "in_progress" in too_early.value.message

    canceling = client.messages.batches.with_raw_response.cancel(batch.id).http_response.json()
    assert_shape("MessageBatch", canceling)
    assert canceling["processing_status"] == "canceling" and canceling["cancel_initiated_at"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)

    ended = end(client, batch.id)
    assert ended["request_counts"]["canceled"] == 4
    assert ended["cancel_initiated_at"] == canceling["cancel_initiated_at"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    for call in (
        client.messages.batches.retrieve,
        client.messages.batches.cancel,
        client.messages.batches.delete,
    ):
        with pytest.raises(anthropic.NotFoundError):
            call(batch.id)


def test_count_tokens(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.count_tokens(
        model=MODEL, system="Be brief.", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert_shape("CountMessageTokensResponse", raw.http_response.json())
    assert raw.http_response.json() == {"input_tokens": 103}
    with pytest.raises(anthropic.BadRequestError) as rejected:
        client.post(
            "/v1/messages/count_tokens",
            body={"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    assert_shape("ErrorResponse", rejected.value.body)


@pytest.mark.parametrize(
    ("requests", "named"),
    [
        ([], "at least 1"),
        ([{"custom_id": "dup", "params": params()}] * 2, "'dup'"),
        ([{"custom_id": "not ok!", "params": params()}], "'not ok!'"),
        ([{"custom_id": "x" * 65, "params": params()}], "x" * 65),
        ([{"custom_id": f"r{i}", "params": params()} for i in range(4)], "at most 3"),
    ],
    ids=["empty", "duplicate", "bad-characters", "too-long", "too-many"],
)
def test_create_validation_errors(requests: list[dict[str, Any]], named: str) -> None:
    with run_emulator(EmulatorConfig(max_requests=3)) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as rejected:
            client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        assert_shape("ErrorResponse", rejected.value.body)
        assert rejected.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert named in rejected.value.message
        assert emu.stats()["batches_created"] == 0


def test_an_oversized_body_gets_413_request_too_large() -> None:
    with run_emulator(EmulatorConfig(max_body_bytes=10_000)) as emu:
        client = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        big = [{"custom_id": f"r{i}", "params": params()} for i in range(100)]
        with pytest.raises(anthropic.APIStatusError) as rejected:
            client.messages.batches.create(requests=big)  # type: ignore[arg-type]
        assert rejected.value.status_code == 413
        assert rejected.value.body == {
            "error": {
                "type": "request_too_large",
                "message": rejected.value.body["error"]["message"],
            }  # type: ignore[index]
        }
        small = client.messages.batches.create(requests=big[:2])  # type: ignore[arg-type]
        assert emu.stats()["batches"] == [small.id]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"model": None}, "model"),
        ({"messages": None}, "messages"),
        ({"max_tokens": None}, "max_tokens"),
        ({"model": "claude-imaginary-1"}, "claude-imaginary-1"),
        ({"temperature": 0.3}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"top_k": 3}, "top_k"),
    ],
    ids=[
        "no-model",
        "no-messages",
        "no-max_tokens",
        "unknown-model",
        "temperature",
        "top_p",
        "top_k",
    ],
)
def test_bad_params_end_as_errored_lines(
    client: anthropic.Anthropic, bad: dict[str, Any], message: str
) -> None:
    bad_params = {k: v for k, v in {**params(), **bad}.items() if v is not None}
    requests = [
        {"custom_id": "bad", "params": bad_params},
        {"custom_id": "good", "params": params()},
    ]
    batch = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert batch.processing_status == "in_progress"
    assert end(client, batch.id)["request_counts"]["errored"] == 1
    lines = {line["custom_id"]: line for line in raw_results(client, batch.id)}
    error = lines["bad"]["result"]["error"]
    assert_shape("ErrorResponse", error)
    assert (
        error["error"]["type"] == "invalid_request_error" and message in error["error"]["message"]
    )
    assert lines["good"]["result"]["type"] == "succeeded"


@pytest.mark.parametrize(
    ("status", "kind"), [(500, "api_error"), (529, "overloaded_error"), (429, "rate_limit_error")]
)
def test_injected_http_errors_have_api_bodies(
    emu: EmulatorHandle, http: httpx2.Client, status: int, kind: str
) -> None:
    emu.set_faults(f"http_{status}@list=1,retry_after=2")
    response = http.get("/v1/messages/batches", headers={"x-api-key": "k"})
    assert response.status_code == status
    assert_shape("ErrorResponse", response.json())
    assert response.json()["error"]["type"] == kind
    assert response.headers["request-id"] == response.json()["request_id"]
    assert (response.headers.get("retry-after") == "2") == (status == 429)


def test_unknown_routes_and_methods(http: httpx2.Client) -> None:
    headers = {"x-api-key": "k"}
    missing = http.get("/v1/nothing", headers=headers)
    assert missing.status_code == 404
    assert_shape("ErrorResponse", missing.json())
    wrong = http.put("/v1/messages/batches", headers=headers)
    assert wrong.status_code in (404, 405, 501)


def test_beta_variants(client: anthropic.Anthropic) -> None:
    batches = client.beta.messages.batches
    batch = batches.create(requests=MIXED_REQUESTS)  # type: ignore[arg-type]
    assert batches.retrieve(batch.id).processing_status == "in_progress"
    assert batches.retrieve(batch.id).processing_status == "ended"
    assert {r.custom_id for r in batches.results(batch.id)} == {
        r["custom_id"] for r in MIXED_REQUESTS
    }
    assert [b.id for b in batches.list()] == [batch.id]
    assert batches.delete(batch.id).id == batch.id
    counted = client.beta.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 40}]
    )
    assert counted.input_tokens == 10
