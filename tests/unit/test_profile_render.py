"""connector.profile_render renders a profiles.yml target exactly as dbt does.

Every case is rendered twice: by `render_profile` (our renderer, or dbt's when ours
hands over) and by dbt's own `Profile.render_profile`; the value and its type must be
the same, or both must fail. The common profiles must be rendered without dbt: that is
the point of the module (dbt's renderer costs ~2 s of CPU at every start-up).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from connector.profile_render import (
    NeedsDbt,
    render_profile,
    render_profile_fast,
    render_profile_with_dbt,
)

ENV = {
    "PGHOST": "db.internal",
    "PGPORT": "6543",
    "FLAG": "True",
    "LOWER_FLAG": "true",
    "LIST": "['a', 'b']",
    "EMPTY": "",
    "TARGET": "prod",
    "DBT_ENV_SECRET_PASSWORD": "s3cr3t",
}

# values dbt and we render alike without dbt's help
FAST = [
    "plain",
    "5432",
    5432,
    True,
    None,
    1.5,
    datetime.date(2026, 1, 2),
    "{{ env_var('PGHOST') }}",
    "{{ env_var('PGPORT') }}",
    "{{ env_var('PGPORT') | as_number }}",
    "{{ env_var('PGPORT') | int }}",
    "{{ env_var('MISSING', 5432) }}",
    "{{ env_var('MISSING', '5432') }}",
    "{{ env_var('MISSING', '5432') | as_number }}",
    "{{ env_var('FLAG') | as_bool }}",
    "{{ env_var('FLAG') | as_native }}",
    "{{ env_var('LIST') | as_native }}",
    "{{ env_var('PGPORT') | as_text }}",
    "{{ env_var('EMPTY') }}",
    "{{ env_var('EMPTY', 'fallback') }}",
    "host-{{ env_var('PGHOST') }}:{{ env_var('PGPORT') }}",
    "{{ 5432 }}",
    "{{ 'text' }}",
    "{% if env_var('EMPTY', '') %}yes{% else %}no{% endif %}",
    "{{ env_var('PGHOST') ~ '.example' }}",
    ["{{ env_var('PGHOST') }}", 1, {"nested": "{{ env_var('PGPORT') | as_number }}"}],
]

# values only dbt renders (ours hands them over), or that fail in both
HANDED_OVER = [
    "{{ env_var('MISSING') }}",
    "{{ env_var('LOWER_FLAG') | as_bool }}",
    "{{ env_var('PGHOST') | as_number }}",
    "{{ var('x', 'default') }}",
    "{{ undefined_name }}",
    "{{ modules.datetime.date(2026, 1, 2).isoformat() }}",
    "{{ env_var('DBT_ENV_SECRET_PASSWORD') }}",
    "{{ unclosed",
    "{{ env_var('PGHOST') | no_such_filter }}",
]


def _profile(value: Any, key: str = "value") -> dict[str, Any]:
    return {"target": "dev", "outputs": {"dev": {"type": "postgres", key: value}}}


def _dbt(raw: Any, target: str | None = None) -> tuple[str, dict[str, Any]] | str:
    try:
        return render_profile_with_dbt(raw, "p", target, ENV)
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _ours(raw: Any, target: str | None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("os.environ", dict(ENV))
    try:
        return render_profile(raw, "p", target)
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _typed(value: Any) -> Any:
    """Values with their types, so that 5432 and '5432' (or 1 and True) differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("value", FAST, ids=repr)
def test_common_values_render_as_dbt_renders_them_without_dbt(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _profile(value)
    fast = render_profile_fast(raw, None, ENV)  # NeedsDbt here fails the test
    assert _typed(fast) == _typed(_dbt(raw))
    assert _typed(_ours(raw, None, monkeypatch)) == _typed(_dbt(raw))


@pytest.mark.parametrize("value", HANDED_OVER, ids=repr)
def test_everything_else_is_rendered_by_dbt_itself(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _profile(value)
    with pytest.raises(NeedsDbt):
        render_profile_fast(raw, None, ENV)
    assert _typed(_ours(raw, None, monkeypatch)) == _typed(_dbt(raw))


def test_a_password_that_is_not_valid_jinja_is_taken_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = _profile("p{{a%b", key="password")
    assert _ours(raw, None, monkeypatch) == _dbt(raw) == ("dev", raw["outputs"]["dev"])


@pytest.mark.parametrize(
    ("target", "profile"),
    [
        (None, {"target": "{{ env_var('TARGET') }}", "outputs": {"prod": {"type": "duckdb"}}}),
        ("prod", {"target": "dev", "outputs": {"prod": {"type": "duckdb", "threads": 4}}}),
        (None, {"target": "{{ env_var('MISSING', 'prod') }}", "outputs": {"prod": {"a": 1}}}),
        (None, {"target": "nope", "outputs": {"prod": {"type": "duckdb"}}}),
        (None, {"outputs": {"default": {"type": "duckdb"}}}),
        (None, {"target": "dev"}),
        (None, {"target": "dev", "outputs": {"dev": "not a mapping"}}),
        (None, "not a mapping"),
    ],
)
def test_the_target_is_chosen_as_dbt_chooses_it(
    target: str | None, profile: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _typed(_ours(profile, target, monkeypatch)) == _typed(_dbt(profile, target))


def test_a_target_that_is_not_chosen_is_never_rendered(monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt renders only the chosen output: a missing variable elsewhere is no error."""
    raw = {
        "target": "dev",
        "outputs": {
            "dev": {"type": "duckdb", "path": "{{ env_var('PGHOST') }}.duckdb"},
            "prod": {"type": "postgres", "host": "{{ env_var('MISSING') }}"},
        },
    }
    assert render_profile_fast(raw, None, ENV) == (
        "dev",
        {"type": "duckdb", "path": "db.internal.duckdb"},
    )
    assert _ours(raw, None, monkeypatch) == _dbt(raw)
