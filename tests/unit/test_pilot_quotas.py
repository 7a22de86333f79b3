"""The pilot's sampling rules, pure: shares per stratum and the lowest-rank rows."""

from __future__ import annotations

import random

from connector.pilot import _Lowest, quotas, rank


def test_quotas_are_proportional_by_largest_remainder() -> None:
    counts = {"eu": 60, "us": 30, "apac": 10}
    assert quotas(counts, 10) == {"eu": 6, "us": 3, "apac": 1}
    # 4.2, 2.1, 0.7: the one row left goes to the largest remainder
    assert quotas(counts, 7) == {"eu": 4, "us": 2, "apac": 1}
    assert quotas(counts, 1) == {"eu": 1, "us": 0, "apac": 0}


def test_quotas_never_exceed_a_stratum_and_add_up_to_the_sample() -> None:
    rng = random.Random(5)
    for _ in range(200):
        counts = {f"s{i}": rng.randint(1, 40) for i in range(rng.randint(1, 12))}
        n = rng.randint(1, 300)
        shares = quotas(counts, n)
        assert sum(shares.values()) == min(n, sum(counts.values()))
        assert all(0 <= shares[k] <= counts[k] for k in counts)


def test_quotas_of_an_empty_input_are_empty() -> None:
    assert quotas({}, 10) == {}
    assert quotas({"a": 3}, 0) == {"a": 0}


def test_lowest_keeps_the_lowest_ranks_whatever_the_order_offered() -> None:
    ids = [str(i) for i in range(500)]
    expected = sorted(ids, key=lambda c: rank("items", c))[:20]
    for seed in range(3):
        random.Random(seed).shuffle(ids)
        keep = _Lowest(20)
        for cid in ids:
            keep.offer(rank("items", cid), cid)
        assert sorted(keep.ids()) == sorted(expected)
    empty = _Lowest(0)
    empty.offer(1, "x")
    assert empty.ids() == []


def test_rank_is_fixed_per_enrichment_and_key() -> None:
    assert rank("items", "42") == rank("items", "42")
    assert rank("items", "42") != rank("items", "43")
    assert rank("items", "42") != rank("other", "42")
