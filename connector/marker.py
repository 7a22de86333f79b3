"""The marker request: proof of which intent a batch on the API belongs to.

The Batch API has no idempotency key, and a batch object carries nothing the client
chose but its custom_ids, which a dev and a prod copy of one project share. So every
batch body carries one extra request whose custom_id is derived from the intent's
submission id: `be-sub-` + its 32 hex digits. Its result line (every request gets one,
errored, expired or canceled included) tells whose batch it is; landing checks it and
does not keep it. It asks for one output token (about 10 tokens in all, a few millionths
of a dollar per batch) and never collides with a row's custom_id: `be-` ids of rows are
`be-` + 48 base32 characters, and verbatim keys never start with `be-`.
"""

from __future__ import annotations

import re

import orjson

MARKER_PREFIX = "be-sub-"
_SUBMISSION = re.compile(r"^sub_([0-9a-f]{32})$")
_MARKER = re.compile(rb'"custom_id"\s*:\s*"(be-sub-[0-9a-f]{32})"')


def marker_custom_id(submission_id: str) -> str:
    match = _SUBMISSION.match(submission_id)
    if match is None:
        raise ValueError(f"not a submission id: {submission_id!r}")
    return MARKER_PREFIX + match.group(1)


def submission_of(marker: str) -> str:
    return "sub_" + marker.removeprefix(MARKER_PREFIX)


def is_marker(custom_id: str) -> bool:
    return custom_id.startswith(MARKER_PREFIX)


def marker_line(custom_id: str, model: str) -> bytes:
    """The marker's element of a batch body: the smallest valid request for the model."""
    return orjson.dumps(
        {
            "custom_id": custom_id,
            "params": {
                "model": model,
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "batch-enrich marker"}],
            },
        }
    )


def markers_in(lines: bytes) -> set[str]:
    """The marker custom_ids in a chunk of result lines (JSONL, whole lines)."""
    return {m.decode() for m in _MARKER.findall(lines)}
