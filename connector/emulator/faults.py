"""Fault injection: the spec string, and the seeded decisions made from it.

A spec is a comma-separated list of `kind=probability` terms, plus `seed=N` and
`retry_after=S`, e.g. `http_529@create=0.2,results_cut=0.5,item_api_error=0.1,seed=42`.
HTTP faults (`http_<status>`) may be scoped to one endpoint with `@endpoint`.

HTTP faults, `create_no_answer`, `results_cut` and `batch_expire` draw from one RNG
seeded by the spec's seed, in the order the calls arrive; each create also draws a
batch fault seed from it. Item and output faults are a hash of (that batch seed,
custom_id, kind): the same seed and calls give the same fates, and the same request in
a new batch gets a fresh draw.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

HTTP_STATUSES: tuple[int, ...] = (400, 401, 402, 403, 404, 413, 429, 500, 504, 529)
ENDPOINTS: tuple[str, ...] = (
    "create",
    "retrieve",
    "list",
    "cancel",
    "delete",
    "results",
    "count_tokens",
)
CALL_FAULTS: tuple[str, ...] = ("create_no_answer", "results_cut", "batch_expire")
ITEM_FAULTS: tuple[str, ...] = (
    "item_invalid_request",
    "item_api_error",
    "item_overloaded",
    "item_expired",
    "item_canceled",
)
OUTPUT_FAULTS: tuple[str, ...] = (
    "output_not_json",
    "output_schema_violation",
    "output_lone_surrogate",
)
NAMED_FAULTS: tuple[str, ...] = CALL_FAULTS + ITEM_FAULTS + OUTPUT_FAULTS

FAULT_HELP: dict[str, str] = {
    "http_<status>": "answer that HTTP error instead: "
    + " ".join(map(str, HTTP_STATUSES))
    + " (429 sends retry-after)",
    "http_<status>@<endpoint>": "the same, on one endpoint only: " + "|".join(ENDPOINTS),
    "create_no_answer": "create and commit the batch, then close the connection unanswered",
    "results_cut": "stop the results stream after some lines and a partial line",
    "item_invalid_request": "item ends errored with invalid_request_error",
    "item_api_error": "item ends errored with api_error",
    "item_overloaded": "item ends errored with overloaded_error",
    "item_expired": "item ends expired",
    "item_canceled": "item ends canceled",
    "output_not_json": "structured output is prose; a forced tool answers with text",
    "output_schema_violation": "structured output or tool input breaks its schema",
    "output_lone_surrogate": "a text block ends with a lone surrogate escape (\\ud800)",
    "batch_expire": "the whole batch ends with every item expired",
    "seed=N": "seed for fault decisions (default: the emulator's --seed)",
    "retry_after=S": "seconds sent in retry-after with 429 (default 1)",
}


@dataclass(frozen=True)
class HttpFault:
    status: int
    endpoint: str | None
    probability: float

    @property
    def kind(self) -> str:
        return f"http_{self.status}"

    def term(self) -> str:
        scope = f"@{self.endpoint}" if self.endpoint else ""
        return f"{self.kind}{scope}={self.probability:g}"


@dataclass(frozen=True)
class FaultSpec:
    """A parsed fault spec. `FaultSpec()` injects nothing."""

    http: tuple[HttpFault, ...] = ()
    named: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    retry_after: float = 1.0

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse `kind[@endpoint]=p,...`; raises ValueError naming the bad term."""
        http: list[HttpFault] = []
        named: dict[str, float] = {}
        seed: int | None = None
        retry_after = 1.0
        for raw in text.replace("\n", ",").split(","):
            term = raw.strip()
            if not term:
                continue
            key, sep, value = term.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"fault term {term!r} has no '=value'")
            if key == "seed":
                seed = _parse_int(term, value)
            elif key == "retry_after":
                retry_after = _parse_non_negative(term, value)
            elif key.startswith("http_"):
                http.append(_parse_http(term, key, _parse_probability(term, value)))
            elif key in NAMED_FAULTS:
                named[key] = _parse_probability(term, value)
            else:
                known = ", ".join(("http_<status>[@endpoint]", *NAMED_FAULTS, "seed"))
                raise ValueError(f"unknown fault {key!r} in {term!r}; known: {known}")
        return cls(http=tuple(http), named=named, seed=seed, retry_after=retry_after)

    @classmethod
    def from_json(cls, value: object) -> FaultSpec:
        """Accept a spec string, `{"spec": "..."}` or `{"kind": probability, ...}`."""
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            if set(value) == {"spec"} and isinstance(value["spec"], str):
                return cls.parse(value["spec"])
            return cls.parse(",".join(f"{k}={v}" for k, v in value.items()))
        raise ValueError("faults must be a spec string or a JSON object")

    def probability(self, kind: str) -> float:
        return self.named.get(kind, 0.0)

    def __str__(self) -> str:
        terms = [fault.term() for fault in self.http]
        terms += [f"{kind}={p:g}" for kind, p in self.named.items()]
        if self.seed is not None:
            terms.append(f"seed={self.seed}")
        if self.retry_after != 1.0:
            terms.append(f"retry_after={self.retry_after:g}")
        return ",".join(terms)


def _parse_http(term: str, key: str, probability: float) -> HttpFault:
    status_text, _, endpoint = key[len("http_") :].partition("@")
    if not status_text.isdigit() or int(status_text) not in HTTP_STATUSES:
        statuses = ", ".join(map(str, HTTP_STATUSES))
        raise ValueError(f"unsupported HTTP status in {term!r}; use one of {statuses}")
    if endpoint and endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint in {term!r}; use one of {', '.join(ENDPOINTS)}")
    return HttpFault(int(status_text), endpoint or None, probability)


def _parse_probability(term: str, value: str) -> float:
    try:
        probability = float(value)
    except ValueError:
        raise ValueError(f"probability in {term!r} is not a number") from None
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability in {term!r} must be within 0..1")
    return probability


def _parse_int(term: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{term!r} needs an integer") from None


def _parse_non_negative(term: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{term!r} needs a number") from None
    if number < 0:
        raise ValueError(f"{term!r} must not be negative")
    return number


def hash_draw(*parts: object) -> float:
    """A uniform draw in [0, 1) that depends only on `parts`."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class FaultInjector:
    """Thread-safe decisions from the current spec, and counts of what fired."""

    def __init__(self, spec: FaultSpec, default_seed: int) -> None:
        self._lock = threading.Lock()
        self._default_seed = default_seed
        self._fired: Counter[str] = Counter()
        self._spec = spec
        self._rng = random.Random(self.seed)

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    @property
    def seed(self) -> int:
        return self._default_seed if self._spec.seed is None else self._spec.seed

    def replace(self, spec: FaultSpec) -> None:
        """Swap the spec at runtime; the call RNG restarts from the new seed."""
        with self._lock:
            self._spec = spec
            self._rng = random.Random(self.seed)

    def http_fault(self, endpoint: str) -> HttpFault | None:
        with self._lock:
            for fault in self._spec.http:
                if fault.endpoint not in (None, endpoint):
                    continue
                if fault.probability and self._rng.random() < fault.probability:
                    self._fired[fault.kind] += 1
                    return fault
        return None

    def call_fault(self, kind: str) -> bool:
        """Draw for `create_no_answer`, `results_cut` or `batch_expire`; counts it when
        it fires."""
        with self._lock:
            probability = self._spec.probability(kind)
            if probability and self._rng.random() < probability:
                self._fired[kind] += 1
                return True
        return False

    def uniform(self) -> float:
        with self._lock:
            return self._rng.random()

    def batch_seed(self) -> int:
        """A seed for one new batch's item and output fault draws."""
        with self._lock:
            return self._rng.getrandbits(63)

    def record(self, kinds: Iterable[str]) -> None:
        with self._lock:
            self._fired.update(kinds)

    def fired(self) -> dict[str, int]:
        with self._lock:
            return dict(self._fired)


def item_fault(spec: FaultSpec, batch_seed: int, custom_id: str) -> str | None:
    """The item fault this request meets in its batch, if any (first match wins)."""
    if not spec.named:
        return None
    for kind in ITEM_FAULTS:
        probability = spec.probability(kind)
        if probability and hash_draw(batch_seed, custom_id, kind) < probability:
            return kind
    return None


def output_fault(spec: FaultSpec, batch_seed: int, custom_id: str) -> str | None:
    """The output fault a succeeded item meets, if any (first match wins)."""
    if not spec.named:
        return None
    for kind in OUTPUT_FAULTS:
        probability = spec.probability(kind)
        if probability and hash_draw(batch_seed, custom_id, kind) < probability:
            return kind
    return None
