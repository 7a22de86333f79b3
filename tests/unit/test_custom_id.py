"""custom_id: verbatim when the API accepts the key as is, a stable encoded id otherwise."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.custom_id import (
    CUSTOM_ID_RE,
    canonical_key_json,
    canonical_value,
    custom_id_for,
)

API_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # from the OpenAPI spec, on purpose
ENCODED = re.compile(r"^be-[a-z2-7]{48}$")


def expected_encoding(key_json: str) -> str:
    """Independent restatement of the encoding rule in docs/architecture.md §3."""
    digest = hashlib.sha256(key_json.encode()).digest()
    return "be-" + base64.b32encode(digest).decode().lower()[:48]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([42], "42"),
        ([0], "0"),
        ([-7], "-7"),
        (["ticket_42"], "ticket_42"),
        (["A-b_9"], "A-b_9"),
        (["x" * 64], "x" * 64),
        ([UUID("12345678-1234-5678-1234-567812345678")], "12345678-1234-5678-1234-567812345678"),
        ([dt.date(2024, 5, 1)], "2024-05-01"),
        ([Decimal("42.000")], "42"),
        ([True], "true"),
        (["be"], "be"),
        (["bee-1"], "bee-1"),
        (["BE-1"], "BE-1"),
    ],
)
def test_single_keys_that_fit_are_verbatim(values: list[object], expected: str) -> None:
    assert custom_id_for(values) == expected


@pytest.mark.parametrize(
    ("values", "key_json"),
    [
        (["a.b"], '["a.b"]'),
        (["a+b"], '["a+b"]'),
        (["a/b"], '["a/b"]'),
        (["a b"], '["a b"]'),
        (["café"], '["caf\\u00e9"]'),
        (["日本"], '["\\u65e5\\u672c"]'),
        (["x" * 65], '["' + "x" * 65 + '"]'),
        ([10**70], "[1" + "0" * 70 + "]"),
        ([""], '[""]'),
        (["abc\n"], '["abc\\n"]'),
        (["be-1"], '["be-1"]'),
        (["be-" + "a" * 48], '["be-' + "a" * 48 + '"]'),
        ([1, "a"], '[1,"a"]'),
        (["a", 1], '["a",1]'),
        ([1, 2, 3], "[1,2,3]"),
        ([Decimal("0.50")], '["0.5"]'),
        ([0.5], '["0.5"]'),
        ([dt.datetime(2024, 5, 1, 10, 0)], '["2024-05-01T10:00:00"]'),
        ([dt.time(10, 30)], '["10:30:00"]'),
    ],
)
def test_other_keys_are_encoded_from_their_canonical_json(
    values: list[object], key_json: str
) -> None:
    assert canonical_key_json(values) == key_json
    assert custom_id_for(values) == expected_encoding(key_json)
    assert ENCODED.fullmatch(custom_id_for(values))


def test_composite_key_order_matters() -> None:
    assert custom_id_for([1, 2]) != custom_id_for([2, 1])


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Decimal("42.00"), 42),
        (Decimal("0.10"), 0.1),
        (1.0, 1),
        (Decimal("1E+2"), 100),
        (Decimal("1E-7"), 1e-7),
        (
            dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC),
        ),
    ],
)
def test_equal_values_of_different_types_share_an_id(left: object, right: object) -> None:
    assert canonical_value(left) == canonical_value(right)
    assert custom_id_for([left, "x"]) == custom_id_for([right, "x"])


@pytest.mark.parametrize(
    ("left", "right"),
    [(1, "1"), (True, 1), (Decimal("0.5"), "0.5x"), (dt.date(2024, 5, 1), "2024-05-02")],
)
def test_values_that_differ_in_type_or_value_differ_in_composite_keys(
    left: object, right: object
) -> None:
    assert custom_id_for([left, "x"]) != custom_id_for([right, "x"])


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([None], ValueError),
        ([1, None], ValueError),
        ([], ValueError),
        ([float("nan")], ValueError),
        ([float("inf")], ValueError),
        ([Decimal("NaN")], ValueError),
        ([b"bytes"], TypeError),
        ([[1, 2]], TypeError),
        ([{"a": 1}], TypeError),
    ],
)
def test_invalid_keys_are_refused(values: list[object], error: type[Exception]) -> None:
    with pytest.raises(error):
        custom_id_for(values)


def test_a_bare_string_is_not_a_key_sequence() -> None:
    with pytest.raises(ValueError, match="sequence"):
        custom_id_for("abc")


def test_module_pattern_is_the_api_pattern() -> None:
    assert CUSTOM_ID_RE.pattern == API_PATTERN.pattern


# -- properties ----------------------------------------------------------------------

key_values = st.one_of(
    st.text(),
    st.text(alphabet="abcXYZ019_-", min_size=1, max_size=70),
    st.integers(),
    st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.uuids(),
)
keys = st.lists(key_values, min_size=1, max_size=4)


@given(keys)
def test_ids_are_deterministic_and_always_accepted_by_the_api(values: list[object]) -> None:
    first = custom_id_for(values)
    assert custom_id_for(list(values)) == first
    assert API_PATTERN.fullmatch(first)


@given(st.text())
def test_single_text_keys_follow_the_verbatim_rule(text: str) -> None:
    fits = API_PATTERN.fullmatch(text) is not None and not text.startswith("be-")
    result = custom_id_for([text])
    if fits:
        assert result == text
    else:
        assert ENCODED.fullmatch(result)


verbatim_or_not = st.one_of(
    st.text(alphabet="abe-_019", min_size=1, max_size=66),
    st.just("be-").flatmap(lambda p: st.text(alphabet="a2-", max_size=50).map(p.__add__)),
    st.text(max_size=10),
)


@given(st.sets(verbatim_or_not, min_size=2, max_size=60))
def test_distinct_single_text_keys_never_collide(texts: set[str]) -> None:
    ids = {custom_id_for([t]) for t in texts}
    assert len(ids) == len(texts)


@given(st.sets(st.integers(), min_size=2, max_size=60))
def test_distinct_integer_keys_never_collide(numbers: set[int]) -> None:
    ids = {custom_id_for([n]) for n in numbers}
    assert len(ids) == len(numbers)


@given(st.sets(st.tuples(verbatim_or_not, st.integers(-3, 3) | st.none()), min_size=2))
def test_distinct_composite_keys_never_collide(pairs: set[tuple[str, int | None]]) -> None:
    # A nullable second column modelled as a 1- or 2-column key, to mix key shapes.
    keys = {(t,) if n is None else (t, n) for t, n in pairs}
    ids = {custom_id_for(list(k)) for k in keys}
    assert len(ids) == len(keys)


def test_property_tests_run_without_wall_clock_limits() -> None:
    """tests/unit/conftest.py: a busy machine must not fail a property test by time."""
    from hypothesis import HealthCheck, settings

    assert settings.default.deadline is None
    assert {HealthCheck.too_slow, HealthCheck.data_too_large} <= set(
        settings.default.suppress_health_check
    )
