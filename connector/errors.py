"""The connector's error kinds and the exit codes a scheduler can act on.

Two kinds of row-level trouble never become exceptions here: a bad row is a
*rejection* (reported, skipped) and a failed result is an *outcome* (recorded in the
ledger). Exceptions are for what stops a command.
"""

from __future__ import annotations

# Exit codes (documented in docs/running.md; tests assert them).
EXIT_OK = 0  # done, or progress made and more is in flight
EXIT_ERROR = 1  # an error stopped part of the work; see the message
EXIT_USAGE = 2  # bad options, bad declaration or profile: fix the configuration
EXIT_ACCOUNT = 3  # the API refused the account (401, 403, billing): nothing more submitted
EXIT_BUDGET = 4  # a budget stopped submission; rerun with --approve-usd to lift it
EXIT_LOCKED = 5  # the warehouse file, or the ledger's sync guard, is held by another process


class EnrichError(Exception):
    """Base of every error the CLI turns into a message and an exit code."""

    exit_code = EXIT_ERROR


class ConfigError(EnrichError):
    """The project, profile or a declaration is wrong; the message says how to fix it."""

    exit_code = EXIT_USAGE


class AccountError(EnrichError):
    """The API refused the credentials or the account; stops the run, consumes no attempts."""

    exit_code = EXIT_ACCOUNT


class WarehouseLockedError(EnrichError):
    """Another process holds the warehouse file."""

    exit_code = EXIT_LOCKED


class LedgerError(EnrichError):
    """The ledger refused a state change (an illegal transition or a lost race)."""


class SyncBusyError(WarehouseLockedError):
    """Another `enrich sync` holds the ledger's sync guard; nothing was changed."""


class GuardLostError(LedgerError):
    """The sync guard was lost mid-run (its session died): stop before the next step."""


class DuplicateResultLinesError(LedgerError):
    """A results stream repeated a custom_id; the landing rolled back."""


class TransientApiError(EnrichError):
    """A call failed in a way that may succeed later (5xx, 529, timeouts, cut streams)."""


class CreateOutcomeUnknownError(TransientApiError):
    """A create call failed after it may have reached the API: reconcile before resubmitting."""


class CreateRejectedError(EnrichError):
    """The API answered a create with a definite refusal (400, 413): nothing was created."""


class RateLimitedError(TransientApiError):
    """429: wait `retry_after` seconds before the next call."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
