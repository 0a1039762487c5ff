"""Failure types callers can match on (``ApplicationError.type``).

The original declared ``nonRetryableErrorTypes: ['ValidationError', 'DuplicateError']`` but threw
plain ``Error``s, so nothing ever matched (B6). Here the types are raised on purpose and listed once.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

VALIDATION_ERROR = "ValidationError"
DUPLICATE_ERROR = "DuplicateError"
# The adopted tenant id belongs to a tenant this run did not create (or to the management tenant).
TENANT_CONFLICT = "TenantConflictError"
EMAIL_REJECTED = "EmailRejected"
CANCELLED = "TenantCreationCancelled"

# Database errors, classified for every activity by ``activities/db_errors.py``:
CONSTRAINT_VIOLATION = "ConstraintViolationError"  # unique, foreign key, check, not-null, value too long
INVALID_DATA = "InvalidDataError"  # other data exceptions (SQLSTATE class 22)
SCHEMA_MISMATCH = "SchemaMismatchError"  # undefined table, column, function, type; no ON CONFLICT index
DATABASE_UNAVAILABLE = "DatabaseUnavailableError"  # retryable: connection lost or refused, pool exhausted
TRANSIENT_DATABASE = "TransientDatabaseError"  # retryable: serialization, deadlock, lock or statement timeout

NON_RETRYABLE_TYPES: tuple[str, ...] = (VALIDATION_ERROR, DUPLICATE_ERROR, TENANT_CONFLICT, EMAIL_REJECTED,
                                        CONSTRAINT_VIOLATION, INVALID_DATA, SCHEMA_MISMATCH)


def validation_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=VALIDATION_ERROR, non_retryable=True)


def duplicate_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=DUPLICATE_ERROR, non_retryable=True)


def tenant_conflict_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=TENANT_CONFLICT, non_retryable=True)
