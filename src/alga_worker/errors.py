"""Failure types callers can match on (``ApplicationError.type``).

The original declared ``nonRetryableErrorTypes: ['ValidationError', 'DuplicateError']`` but threw
plain ``Error``s, so nothing ever matched (B6). Here the types are raised on purpose and listed once.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

VALIDATION_ERROR = "ValidationError"
DUPLICATE_ERROR = "DuplicateError"
TENANT_CONFLICT = "TenantConflict"
EMAIL_REJECTED = "EmailRejected"
CANCELLED = "TenantCreationCancelled"

NON_RETRYABLE_TYPES: tuple[str, ...] = (VALIDATION_ERROR, DUPLICATE_ERROR, TENANT_CONFLICT, EMAIL_REJECTED)


def validation_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=VALIDATION_ERROR, non_retryable=True)


def duplicate_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=DUPLICATE_ERROR, non_retryable=True)
