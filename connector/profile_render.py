"""Rendering a profiles.yml target the way dbt does, without importing dbt.

Importing dbt's renderer costs about 2 s of CPU, on every `enrich` command, for what
is nearly always `{{ env_var('NAME', 'default') }}` and a filter. So the common case
is rendered here, with dbt's semantics:

- only strings are rendered; dates become ISO text; dicts and lists are walked;
- `env_var(name, default)` returns the variable, else the default, else fails;
- dbt's native rendering: a value that is one `{{ ... }}` keeps the type of what it
  yields (a default of 5432 stays an int), text around it makes a string;
  `as_text`, `as_number`, `as_bool` and `as_native` mark the result as dbt's markers do.

Anything else (another context member such as `var()` or `modules`, a secret
`DBT_ENV_SECRET_` variable, a Jinja error, a filter dbt checks) is handed to dbt's
own renderer, so the result is always dbt's: tests/unit/test_profile_render.py
compares the two on every case.
"""

from __future__ import annotations

import os
from ast import literal_eval
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from itertools import chain, islice
from typing import Any

import jinja2
import jinja2.nativetypes
import jinja2.sandbox

SECRET_ENV_PREFIX = "DBT_ENV_SECRET"  # noqa: S105 (a name prefix, not a secret)


class NeedsDbt(Exception):
    """The value uses something only dbt's renderer knows; render it there."""


class _Text(str):
    pass


class _Native(str):
    pass


class _Bool(_Native):
    pass


class _Number(_Native):
    pass


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _concat(nodes: Iterable[Any]) -> Any:
    """dbt's `quoted_native_concat`: one node keeps its type; markers are evaluated."""
    head = list(islice(nodes, 2))
    if not head:
        return ""
    if len(head) > 1:
        return "".join(str(v) for v in chain(head, nodes))
    raw = head[0]
    if isinstance(raw, jinja2.Undefined):
        raise NeedsDbt("an undefined name")
    if isinstance(raw, _Text):
        return str(raw)
    if not isinstance(raw, _Native):
        return raw
    try:
        result = literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError):
        result = raw
    if isinstance(raw, _Bool) and not isinstance(result, bool):
        raise NeedsDbt("as_bool of a value that is not a boolean")  # dbt words the error
    if isinstance(raw, _Number) and not _is_number(result):
        raise NeedsDbt("as_number of a value that is not a number")
    return result


class _Undefined(jinja2.Undefined):
    """Any name outside env_var: let dbt render it (it knows var(), modules, ...)."""

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise NeedsDbt(f"'{self._undefined_name}' is a dbt context member")

    __str__ = __iter__ = __len__ = __bool__ = __call__ = _fail_with_undefined_error


class _Environment(jinja2.sandbox.SandboxedEnvironment):
    """dbt's native sandbox: native code generation, dbt's concat."""

    code_generator_class = jinja2.nativetypes.NativeCodeGenerator


class _Template(jinja2.nativetypes.NativeTemplate):
    environment_class = _Environment  # type: ignore[assignment]

    def render(self, *args: Any, **kwargs: Any) -> Any:
        context = self.new_context(dict(*args, **kwargs))
        try:
            return _concat(self.root_render_func(context))
        except Exception:
            return self.environment.handle_exception()


_Environment.template_class = _Template


def _environment(env: Mapping[str, str]) -> _Environment:
    jinja_env = _Environment(
        undefined=_Undefined, extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"]
    )
    jinja_env.filters.update(as_text=_Text, as_bool=_Bool, as_number=_Number, as_native=_Native)

    def env_var(name: str, default: Any = None) -> Any:
        if name.startswith(SECRET_ENV_PREFIX):
            raise NeedsDbt("a secret variable")  # dbt places and swaps it
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise NeedsDbt(f"env var {name} is missing")  # dbt's own message names it

    jinja_env.globals = {"env_var": env_var}
    return jinja_env


def _render_value(jinja_env: _Environment, value: Any) -> Any:
    if not isinstance(value, str):
        return value.isoformat() if isinstance(value, date) else value
    try:
        return jinja_env.from_string(value).render()
    except NeedsDbt:
        raise
    except Exception as exc:  # a Jinja error: dbt says it in its words
        raise NeedsDbt(str(exc)) from None


def _deep_map(func: Callable[[Any], Any], value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_map(func, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_map(func, v) for v in value]
    return func(value)


def render_profile_fast(
    raw_profile: Mapping[str, Any], target_override: str | None, env: Mapping[str, str]
) -> tuple[str, dict[str, Any]]:
    """(target name, rendered target) as dbt's Profile.render_profile gives them, or
    NeedsDbt when only dbt can render it (the caller then asks dbt)."""
    if not isinstance(raw_profile, Mapping):
        raise NeedsDbt("dbt words the error of a profile that is not a mapping")
    jinja_env = _environment(env)
    if target_override is not None:
        target_name: Any = target_override
    elif "target" in raw_profile:
        target_name = _render_value(jinja_env, raw_profile["target"])
    else:
        raise NeedsDbt("no target: dbt warns and uses 'default'")
    outputs = raw_profile.get("outputs")
    if not isinstance(outputs, dict) or not isinstance(outputs.get(target_name), dict):
        raise NeedsDbt("dbt names the missing outputs or target")
    rendered = _deep_map(lambda v: _render_value(jinja_env, v), outputs[target_name])
    return str(target_name), rendered


def render_profile(
    raw_profile: Mapping[str, Any], profile_name: str, target_override: str | None
) -> tuple[str, dict[str, Any]]:
    """The target as dbt renders it: here when possible, else by dbt itself."""
    env = dict(os.environ)
    try:
        return render_profile_fast(raw_profile, target_override, env)
    except NeedsDbt:
        return render_profile_with_dbt(raw_profile, profile_name, target_override, env)


def render_profile_with_dbt(
    raw_profile: Mapping[str, Any],
    profile_name: str,
    target_override: str | None,
    env: Mapping[str, str],
) -> tuple[str, dict[str, Any]]:
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context

    set_invocation_context(dict(env))
    name, data = Profile.render_profile(
        dict(raw_profile), profile_name, target_override, ProfileRenderer({})
    )
    return name, dict(data)
