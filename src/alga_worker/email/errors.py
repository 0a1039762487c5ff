"""Email errors, split by what the caller should do next.

The original worker caught every send error and returned ``emailSent: false`` (B8), so a rejected
message looked like a success and a transient outage was never retried. Here each provider turns its
own failures into one of two classes, and the activity decides retry policy from the class alone:

* :class:`EmailRejected`: retrying cannot help (bad address, validation error, wrong credentials).
  The activity raises a non-retryable ``ApplicationError``.
* :class:`EmailTemporarilyUnavailable`: the provider is busy or unreachable (429, 5xx, connection
  errors). The activity lets Temporal retry; every retry reuses the idempotency key, so a send that
  did go through is not repeated.

Messages never contain the body, the subject or any credential.
"""

from __future__ import annotations


class EmailError(Exception):
    """Base class of every error the email package raises."""


class EmailRejected(EmailError):
    """The provider refused the message for good; the same request will fail again."""


class EmailTemporarilyUnavailable(EmailError):
    """The provider could not take the message now; the same request may succeed later.

    ``retry_after`` carries the provider's hint in seconds (HTTP ``Retry-After``), when it gave one,
    so the activity can pass it on as ``next_retry_delay``.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
