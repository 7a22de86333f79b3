"""The only module that talks to the anthropic SDK.

Every SDK exception is mapped here to one of the connector's error kinds, with a
message that never contains the API key (the SDK's own messages do not either; the
tests check).

The SDK is imported on the first call, not with this module: a sync or status with
nothing to send or fetch never pays its ~1 s of imports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK is imported on first use (about 1 s of CPU at start-up)
    import anthropic
    from anthropic.types.messages import MessageBatch

from connector.errors import (
    AccountError,
    CreateOutcomeUnknownError,
    CreateRejectedError,
    RateLimitedError,
    TransientApiError,
)

log = logging.getLogger(__name__)

BATCHES_PATH = "/v1/messages/batches"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# the Messages params count_tokens accepts (the spec's CountMessageTokensParams)
COUNT_TOKENS_PARAMS = frozenset(
    {"cache_control", "messages", "model", "output_config", "system", "thinking"}
    | {"tool_choice", "tools"}
)


@dataclass(frozen=True)
class RemoteBatch:
    id: str
    processing_status: str
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    archived_at: datetime | None
    results_url: str | None

    @property
    def total(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired

    @classmethod
    def of(cls, b: MessageBatch) -> RemoteBatch:
        c = b.request_counts
        return cls(
            id=b.id,
            processing_status=b.processing_status,
            processing=c.processing,
            succeeded=c.succeeded,
            errored=c.errored,
            canceled=c.canceled,
            expired=c.expired,
            created_at=b.created_at,
            expires_at=b.expires_at,
            ended_at=b.ended_at,
            archived_at=b.archived_at,
            results_url=b.results_url,
        )


def _retry_after(exc: anthropic.APIStatusError, default: float = 5.0) -> float:
    value = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def _status_text(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return f"{exc.status_code} {err.get('type')}: {err.get('message')}"
    return f"{exc.status_code}"


def _account_error(exc: anthropic.APIStatusError) -> AccountError | None:
    text = _status_text(exc)
    if exc.status_code in (401, 402, 403) or "billing" in text:
        hint = {
            401: "check ANTHROPIC_API_KEY",
            402: "check the account's billing",
            403: "the key lacks permission for the Batch API",
        }.get(exc.status_code, "check the account")
        return AccountError(f"the API refused the account ({text}); {hint}")
    return None


class BatchApi:
    """Message Batches calls with the connector's error semantics."""

    def __init__(self, *, timeout: float = 60.0, max_retries: int = 2) -> None:
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise AccountError(
                "ANTHROPIC_API_KEY is not set; export it (or point ANTHROPIC_BASE_URL at "
                "`enrich emulator` and set any key to try the pipeline for free)"
            )
        self._timeout = timeout
        self._max_retries = max_retries

    @cached_property
    def _client(self) -> anthropic.Anthropic:
        import anthropic

        # The SDK reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL itself; the key never
        # passes through our code.
        return anthropic.Anthropic(timeout=self._timeout, max_retries=self._max_retries)

    @cached_property
    def _create_client(self) -> anthropic.Anthropic:
        # create must never be retried blindly: a lost answer may hide a created batch.
        return self._client.with_options(max_retries=0)

    def close(self) -> None:
        if "_client" in self.__dict__:  # never built: nothing to close
            self._client.close()

    @contextmanager
    def _mapped(self, what: str, *, create: bool = False) -> Iterator[None]:
        """Map the SDK's (and its transport's) exceptions to the connector's kinds."""
        import anthropic
        import httpx2

        try:
            yield
        except anthropic.APIStatusError as exc:
            self._raise_mapped(exc, create=create)
        except (anthropic.APIConnectionError, httpx2.HTTPError) as exc:
            if create:
                raise CreateOutcomeUnknownError(
                    f"create: no answer ({type(exc).__name__}); reconciling before any resubmit"
                ) from None
            raise TransientApiError(f"{what}: {type(exc).__name__}") from None

    # -------------------------------------------------------------- create
    def create(self, body: IO[bytes]) -> RemoteBatch:
        """POST a prepared JSON body `{"requests": [...]}` (a seekable file).

        Raises CreateOutcomeUnknownError when the batch may or may not exist,
        CreateRejectedError when it definitely does not, RateLimitedError on 429.
        """
        from anthropic.types.messages import MessageBatch

        with self._mapped("create", create=True):
            batch = self._create_client.post(
                BATCHES_PATH,
                cast_to=MessageBatch,
                content=body,
                options={"headers": {"content-type": "application/json"}},
            )
        return RemoteBatch.of(batch)

    def _raise_mapped(self, exc: anthropic.APIStatusError, *, create: bool = False) -> Any:
        account = _account_error(exc)
        if account is not None:
            raise account from None
        text = _status_text(exc)
        if exc.status_code == 429:
            raise RateLimitedError(f"rate limited ({text})", _retry_after(exc)) from None
        if create and exc.status_code in (400, 404, 413, 422):
            raise CreateRejectedError(f"create refused: {text}") from None
        if create:
            raise CreateOutcomeUnknownError(
                f"create failed with {text}; reconciling before any resubmit"
            ) from None
        raise TransientApiError(f"API call failed: {text}") from None

    # ----------------------------------------------------------- read calls
    def retrieve(self, batch_id: str) -> RemoteBatch:
        with self._mapped(f"retrieve {batch_id}"):
            return RemoteBatch.of(self._client.messages.batches.retrieve(batch_id))
        raise AssertionError("unreachable")

    def recent(self, since: datetime, page_size: int = 100) -> Iterator[RemoteBatch]:
        """Batches created at or after `since`, newest first (stops paging past it)."""
        with self._mapped("list batches"):
            for b in self._client.messages.batches.list(limit=page_size):
                if b.created_at < since:
                    return
                yield RemoteBatch.of(b)

    def cancel(self, batch_id: str) -> RemoteBatch:
        with self._mapped(f"cancel {batch_id}"):
            return RemoteBatch.of(self._client.messages.batches.cancel(batch_id))
        raise AssertionError("unreachable")

    def count_tokens(self, params: dict[str, Any]) -> int:
        """Input tokens of one request's params (the free count_tokens endpoint)."""
        from anthropic.types import MessageTokensCount

        body = {k: v for k, v in params.items() if k in COUNT_TOKENS_PARAMS}
        with self._mapped("count_tokens"):
            counted = self._client.post(COUNT_TOKENS_PATH, cast_to=MessageTokensCount, body=body)
        return int(counted.input_tokens)

    @contextmanager
    def results(self, batch_id: str, chunk_size: int = 1 << 16) -> Iterator[Iterator[bytes]]:
        """The raw JSONL bytes of a batch's results, as the API sent them.

        A stream cut mid-way raises TransientApiError from the iterator.
        """
        with (
            self._mapped(f"results {batch_id}"),
            self._client.messages.batches.with_streaming_response.results(batch_id) as resp,
        ):
            yield _guarded(resp.iter_bytes(chunk_size), batch_id)


def _guarded(chunks: Iterator[bytes], batch_id: str) -> Iterator[bytes]:
    import anthropic
    import httpx2

    try:
        yield from chunks
    except (httpx2.HTTPError, anthropic.APIConnectionError) as exc:
        raise TransientApiError(
            f"results stream of {batch_id} was cut ({type(exc).__name__}); "
            "nothing landed, it is fetched again on the next sync"
        ) from None
