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
# A setting the requested work needs is unset or invalid: retrying on the same configuration cannot help.
CONFIGURATION_ERROR = "ConfigurationError"
# The customer's records in the management tenant collide with records of someone else (a client with
# the same name, a contact or portal user with the same email): an operator must decide, a retry cannot.
AMBIGUOUS_CUSTOMER = "AmbiguousCustomerError"
# The request names a tenant id this database does not have: a retry would find the same nothing.
TENANT_NOT_FOUND = "TenantNotFoundError"
# Tenant exports (``activities/tenant_export.py``): the bucket or folder did not answer (5xx, timeout,
# connection refused, disk full): retryable. Refusals (no such bucket, access denied) are ConfigurationError.
EXPORT_STORAGE_UNAVAILABLE = "ExportStorageUnavailableError"

# User management (``activities/users.py``): each is final, a retry would meet the same state.
USER_NOT_FOUND = "UserNotFoundError"  # no such user in that tenant (or the tenant has no active MSP admin)
UNKNOWN_ROLE = "UnknownRoleError"  # a role name the tenant does not have for that kind of user
LAST_ADMIN = "LastAdminError"  # deactivating would leave the tenant without an active MSP admin
LICENSE_LIMIT = "LicenseLimitError"  # every licence of the tenant is used (pass force to go beyond)
USER_INACTIVE = "UserInactiveError"  # a password for a deactivated user: reactivate first

# Database errors, classified for every activity by ``activities/db_errors.py``:
CONSTRAINT_VIOLATION = "ConstraintViolationError"  # unique, foreign key, check, not-null, value too long
INVALID_DATA = "InvalidDataError"  # other data exceptions (SQLSTATE class 22)
SCHEMA_MISMATCH = "SchemaMismatchError"  # undefined table, column, function, type; no ON CONFLICT index
DATABASE_UNAVAILABLE = "DatabaseUnavailableError"  # retryable: connection lost or refused, pool exhausted
TRANSIENT_DATABASE = "TransientDatabaseError"  # retryable: serialization, deadlock, lock or statement timeout

# nm-store (``alga_worker/nmstore.py``): outages retry; refusals cannot be fixed by retrying.
NMSTORE_UNAVAILABLE = "NmStoreUnavailableError"  # retryable: 5xx, 429, connection refused, timeout
NMSTORE_AUTH = "NmStoreAuthError"  # 401/403: our secret or signing key does not match nm-store's
NMSTORE_REJECTED = "NmStoreRejectedError"  # any other 4xx (or a redirect): nm-store refused the request

# Stripe (``activities/stripe.py``): outages retry; refusals and unusable answers cannot be fixed by retrying.
STRIPE_UNAVAILABLE = "StripeUnavailableError"  # retryable: 429, 5xx, connection refused or lost, timeout
STRIPE_AUTH = "StripeAuthError"  # 401/403: STRIPE_SECRET_KEY is wrong, revoked or lacks the permission
STRIPE_REJECTED = "StripeRejectedError"  # other 4xx: unknown session id (resource_missing), card error ...
STRIPE_INCOMPLETE_CHECKOUT = "StripeIncompleteCheckoutError"  # the session has no customer (yet), or no usable one
STRIPE_SUBSCRIPTION_CONFLICT = "StripeSubscriptionConflictError"  # already tagged with another tenant

NON_RETRYABLE_TYPES: tuple[str, ...] = (VALIDATION_ERROR, DUPLICATE_ERROR, TENANT_CONFLICT, EMAIL_REJECTED,
                                        CONFIGURATION_ERROR, AMBIGUOUS_CUSTOMER, TENANT_NOT_FOUND,
                                        USER_NOT_FOUND, UNKNOWN_ROLE, LAST_ADMIN, LICENSE_LIMIT, USER_INACTIVE,
                                        CONSTRAINT_VIOLATION, INVALID_DATA, SCHEMA_MISMATCH,
                                        NMSTORE_AUTH, NMSTORE_REJECTED,
                                        STRIPE_AUTH, STRIPE_REJECTED, STRIPE_INCOMPLETE_CHECKOUT,
                                        STRIPE_SUBSCRIPTION_CONFLICT)


def validation_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=VALIDATION_ERROR, non_retryable=True)


def duplicate_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=DUPLICATE_ERROR, non_retryable=True)


def tenant_conflict_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=TENANT_CONFLICT, non_retryable=True)


def configuration_error(message: str, *details: Any) -> ApplicationError:
    """Names the variables involved, never their values."""
    return ApplicationError(message, *details, type=CONFIGURATION_ERROR, non_retryable=True)


def ambiguous_customer_error(message: str, *details: Any) -> ApplicationError:
    """Raised inside the writing transaction, so nothing is kept: never skip silently, never guess."""
    return ApplicationError(message, *details, type=AMBIGUOUS_CUSTOMER, non_retryable=True)


def tenant_not_found_error(message: str, *details: Any) -> ApplicationError:
    """Typed apart from ValidationError so a caller (a Stripe webhook) can tell a stale id from bad input."""
    return ApplicationError(message, *details, type=TENANT_NOT_FOUND, non_retryable=True)


def user_not_found_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=USER_NOT_FOUND, non_retryable=True)


def unknown_role_error(message: str, *details: Any) -> ApplicationError:
    """The message names the unknown roles and the ones the tenant has, so the caller can correct it."""
    return ApplicationError(message, *details, type=UNKNOWN_ROLE, non_retryable=True)


def last_admin_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=LAST_ADMIN, non_retryable=True)


def license_limit_error(message: str, *details: Any) -> ApplicationError:
    """Details carry limit and used, so a caller can offer to buy licences or pass ``force``."""
    return ApplicationError(message, *details, type=LICENSE_LIMIT, non_retryable=True)


def user_inactive_error(message: str, *details: Any) -> ApplicationError:
    return ApplicationError(message, *details, type=USER_INACTIVE, non_retryable=True)
