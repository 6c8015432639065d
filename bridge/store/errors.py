"""What the store raises on purpose: one type per refusal, so the API, the CLI
and the call flow each turn it into their own answer (a status, an exit code,
a prompt)."""
from __future__ import annotations


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database could not be reached or did not answer in time."""


class NumberAlreadyInPool(StoreError):
    pass


class NotFound(StoreError):
    """No such session, call, recording or number."""


class NumberUnavailable(StoreError):
    """An explicitly requested number is not in the pool, or retired."""

    def __init__(self, message: str, field: str = "virtual_number"):
        super().__init__(message)
        self.field = field  # which request field named it


class NumberInUse(StoreError):
    """A participant already holds this number in a live session, or (retiring)
    live sessions still use it."""

    def __init__(self, message: str, session_ids: list[str] | None = None):
        super().__init__(message)
        self.session_ids = session_ids or []


class UnknownWaitAudio(StoreError):
    """A session names wait audio that was never uploaded (or was deleted)."""


class SessionNotActive(StoreError):
    """The session is closed or expired; it cannot be changed."""


class SessionAnonymised(StoreError):
    """The session's personal data is gone (retention or erasure): nothing to hold."""


class LegalHoldActive(StoreError):
    """The session is under legal hold: it is not anonymised until released."""


class IdempotencyConflict(StoreError):
    """The Idempotency-Key was used before for a different request."""


class PoolExhausted(StoreError):
    """No virtual number is free for both participants."""

    def __init__(self, free_numbers: int, total_numbers: int):
        super().__init__(
            f"no virtual number is free for these participants "
            f"({free_numbers} of {total_numbers} numbers free)"
        )
        self.free_numbers = free_numbers
        self.total_numbers = total_numbers


class RotationInProgress(StoreError):
    """Rows are still under an older lookup key (`masking keys rehash` has not
    finished): purge and erasure wait, since they match rows of different tables
    by hash (a preservation hold, a withdrawal) and would miss some."""
