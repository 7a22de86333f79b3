"""API errors as the emulator raises and renders them.

The real API answers every error with `{"type": "error", "error": {"type", "message"},
"request_id"}`; the one exception is the gateway's 413, which has no `type` or
`request_id` at the top level.
"""

from __future__ import annotations

import secrets

import orjson

ERROR_TYPES_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

DEFAULT_MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of requests has exceeded your rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_request_id() -> str:
    """A fresh `req_...` id (the real API's shape: a prefix and 24 base62 characters)."""
    return "req_011" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


class ApiError(Exception):
    """An error answer: HTTP status, error type, message and any extra headers."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type or ERROR_TYPES_BY_STATUS.get(status, "api_error")
        self.message = message or DEFAULT_MESSAGES.get(self.error_type, "Error")
        self.headers = headers or {}
        super().__init__(f"{status} {self.error_type}: {self.message}")

    def body(self, request_id: str) -> bytes:
        if self.error_type == "request_too_large":
            return orjson.dumps({"error": {"type": self.error_type, "message": self.message}})
        return error_body(self.error_type, self.message, request_id)


def error_object(error_type: str, message: str, request_id: str | None) -> dict[str, object]:
    """An ErrorResponse object, also used inside `errored` result lines."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return orjson.dumps(error_object(error_type, message, request_id))
