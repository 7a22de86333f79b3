"""Fault specs: parsing, errors, runtime replacement, and the seeded decisions."""

from __future__ import annotations

import pytest

from connector.emulator.faults import (
    ENDPOINTS,
    ITEM_FAULTS,
    FaultInjector,
    FaultSpec,
    HttpFault,
    item_fault,
    output_fault,
)

BRIEF_SPEC = (
    "http_500=0.1,http_529@create=0.2,http_429@retrieve=0.3,create_no_answer=0.5,"
    "results_cut=0.5,item_api_error=0.1,item_overloaded=0.05,item_invalid_request=0.05,"
    "item_expired=0.05,item_canceled=0.05,output_not_json=0.1,output_schema_violation=0.1,"
    "batch_expire=0.2,seed=42"
)


def test_the_full_spec_parses_and_round_trips() -> None:
    spec = FaultSpec.parse(BRIEF_SPEC)
    assert spec.http == (
        HttpFault(500, None, 0.1),
        HttpFault(529, "create", 0.2),
        HttpFault(429, "retrieve", 0.3),
    )
    assert spec.seed == 42
    assert spec.probability("item_overloaded") == 0.05
    assert spec.probability("batch_expire") == 0.2
    assert spec.probability("item_api_error") == 0.1
    assert FaultSpec.parse(str(spec)) == spec


def test_empty_specs_inject_nothing() -> None:
    for text in ("", " ", ",,"):
        spec = FaultSpec.parse(text)
        assert spec == FaultSpec() and str(spec) == ""


def test_retry_after_and_json_forms() -> None:
    assert FaultSpec.parse("http_429=1,retry_after=0").retry_after == 0
    assert FaultSpec.from_json({"results_cut": 0.5, "seed": 3}) == FaultSpec.parse(
        "results_cut=0.5,seed=3"
    )
    assert FaultSpec.from_json({"spec": "http_500@list=1"}).http == (HttpFault(500, "list", 1.0),)
    assert FaultSpec.from_json("item_expired=1").probability("item_expired") == 1.0


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("http_418=0.1", "unsupported HTTP status"),
        ("http_500@upload=0.1", "unknown endpoint"),
        ("item_exploded=0.1", "unknown fault"),
        ("results_cut=1.5", "within 0..1"),
        ("results_cut=often", "not a number"),
        ("results_cut", "no '=value'"),
        ("seed=x", "integer"),
        ("retry_after=-1", "must not be negative"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        FaultSpec.parse(text)


def test_http_faults_respect_their_endpoint_scope() -> None:
    injector = FaultInjector(FaultSpec.parse("http_529@create=1"), default_seed=0)
    for endpoint in ENDPOINTS:
        fault = injector.http_fault(endpoint)
        assert (fault is not None) == (endpoint == "create"), endpoint
    assert injector.fired() == {"http_529": 1}


def test_call_faults_follow_the_seed_and_replacing_the_spec_restarts_it() -> None:
    spec = FaultSpec.parse("results_cut=0.5,seed=9")
    first = FaultInjector(spec, default_seed=0)
    draws = [first.call_fault("results_cut") for _ in range(40)]
    assert 5 < sum(draws) < 35
    second = FaultInjector(FaultSpec(), default_seed=0)
    assert not any(second.call_fault("results_cut") for _ in range(10))
    second.replace(spec)
    assert [second.call_fault("results_cut") for _ in range(40)] == draws
    assert second.fired() == {"results_cut": sum(draws)}


def test_item_faults_hit_about_their_share_and_depend_on_the_batch_seed() -> None:
    spec = FaultSpec.parse("item_api_error=0.3")
    hits = [item_fault(spec, 101, f"row-{i}") for i in range(2000)]
    share = sum(hit == "item_api_error" for hit in hits) / len(hits)
    assert 0.25 < share < 0.35
    assert [item_fault(spec, 101, f"row-{i}") for i in range(2000)] == hits
    assert [item_fault(spec, 102, f"row-{i}") for i in range(2000)] != hits


def test_each_batch_draws_its_fault_seed_from_the_seeded_rng() -> None:
    spec = FaultSpec.parse("item_api_error=0.5,seed=5")
    seeds = [FaultInjector(spec, default_seed=0).batch_seed() for _ in range(2)]
    assert seeds[0] == seeds[1], "the same spec seed gives the same batch seeds"
    injector = FaultInjector(spec, default_seed=0)
    assert injector.batch_seed() != injector.batch_seed(), "each batch gets a fresh seed"


def test_each_item_meets_at_most_one_fault_in_a_fixed_order() -> None:
    spec = FaultSpec.parse(",".join(f"{kind}=1" for kind in ITEM_FAULTS))
    assert item_fault(spec, 0, "c") == ITEM_FAULTS[0]
    spec = FaultSpec.parse("output_not_json=1,output_schema_violation=1")
    assert output_fault(spec, 0, "c") == "output_not_json"
    assert item_fault(spec, 0, "c") is None


def test_batch_expire_is_a_seeded_draw_per_create() -> None:
    spec = FaultSpec.parse("batch_expire=0.5,seed=8")
    injector = FaultInjector(spec, default_seed=0)
    doomed = [injector.call_fault("batch_expire") for _ in range(400)]
    assert 150 < sum(doomed) < 250
    assert injector.fired() == {"batch_expire": sum(doomed)}
    again = FaultInjector(spec, default_seed=0)
    assert [again.call_fault("batch_expire") for _ in range(400)] == doomed
