"""Stripe activities: what a checkout session says about the new customer, and tagging its subscription.

S-DEC behaviour (reference 2.1, 3.11): instead of waiting for nm-store to pass the Stripe ids on,
the worker asks Stripe itself, from the checkout session id: the customer, and when the checkout
created a subscription, its first item's price and quantity (the seat count, ``licenseCount``). The
provisioning transaction then writes them to ``stripe_customers`` / ``stripe_subscriptions``
(``db/stripe_records.py``); after it, the subscription is tagged with the tenant id in its Stripe
metadata, so Stripe-side tooling can find the tenant a subscription pays for.

Why it is built this way:

* The official SDK (``stripe.StripeClient``) with its httpx client and the ``*_async`` methods: the
  worker's event loop keeps polling and heartbeating while Stripe answers.
* ``max_network_retries=0``: Temporal retries the activity (with the workflow's policy, visible in
  history); SDK retries inside an attempt would multiply them and hide outages.
* The API version is pinned to the original's (``2024-12-18.acacia``), so the fields read here keep
  their meaning whatever the SDK's default version becomes. Where a later version moved a field (the
  billing period moved from the subscription to its items in ``2025-03-31.basil``), both places are
  read.
* Every Stripe failure becomes a typed :class:`ApplicationError` (``errors.STRIPE_*``): refusals a
  retry cannot fix (unknown session id, card error, a wrong or under-privileged key) are
  non-retryable; rate limits, 5xx and lost connections retry, honouring ``Retry-After`` and
  ``Stripe-Should-Retry``. The SDK's exception is not chained: its raw body would go into history.
* Card and payment data are never read, kept or logged: only ids, the seat count, the
  subscription's status, currency, period and metadata, and the customer's email and name (which the
  ``stripe_customers`` row needs). Messages never contain the API key (Stripe's own 401 message
  quotes a masked part of it, so it is not repeated).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx
import pydantic
from temporalio import activity
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.config import Settings
from alga_worker.models import (
    OutcomeStatus,
    StepOutcome,
    StripeDetails,
    StripeDetailsInput,
    SubscriptionCancellationInput,
    SubscriptionCancellationResult,
    TagStripeSubscriptionInput,
)
from alga_worker.runtime import metrics
from alga_worker.runtime.metrics import call_outcome, record

if TYPE_CHECKING:  # imported where a client is built: a worker without STRIPE_SECRET_KEY never loads the SDK
    import stripe

__all__ = ["API_VERSION", "TENANT_METADATA_KEY", "StripeActivities", "classify_stripe_error"]

log = logging.getLogger(__name__)

API_VERSION = "2024-12-18.acacia"
TENANT_METADATA_KEY = "alga_tenant_id"
# Set by a tenant deletion that cancelled the subscription at period end, removed by its rollback:
# which deletion did it, and what ``cancel_at_period_end`` was before (so the rollback restores it).
DELETION_METADATA_KEY = "alga_deletion_id"
PRIOR_CANCEL_METADATA_KEY = "alga_deletion_prior_cancel_at_period_end"
# Per request; fetch_stripe_details makes up to three in a row within the workflow's 30 s
# start-to-close timeout (Stripe answers these reads in well under a second).
_HTTP_TIMEOUT = httpx.Timeout(8.0, connect=3.0)
# A Retry-After longer than this is Stripe asking for a pause, not a schedule: the retry policy decides.
_MAX_RETRY_DELAY = timedelta(minutes=5)
_SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
# Anything shaped like a Stripe secret or restricted key, masked or not, is cut out of Stripe's messages.
_KEY_LIKE = re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9*]*")


class StripeActivities:
    """Holds one Stripe client per worker process (its HTTP connection pool), or none without a key.

    A worker without ``STRIPE_SECRET_KEY`` still starts and registers these activities: a call then
    fails with a non-retryable ``ConfigurationError`` naming the variable (the workflow skips the
    step when its capabilities say Stripe is not configured).
    """

    def __init__(self, settings: Settings) -> None:
        self._http: stripe.HTTPXClient | None = None
        self._client: stripe.StripeClient | None = None
        if settings.stripe_secret_key is not None:
            import stripe

            self._http = stripe.HTTPXClient(timeout=_HTTP_TIMEOUT)
            self._client = stripe.StripeClient(
                settings.stripe_secret_key.get_secret_value(),
                stripe_version=API_VERSION,
                # AnyHttpUrl renders with a trailing "/": the SDK appends "/v1/...".
                base_addresses={"api": str(settings.stripe_api_base).rstrip("/")},
                http_client=self._http,
                max_network_retries=0,
            )
        if settings.log_level != "debug":
            # The SDK logs every request URL and every error message at INFO; its 401 message quotes
            # part of the key. What matters is logged here, classified, once.
            logging.getLogger("stripe").setLevel(logging.WARNING)

    async def aclose(self) -> None:
        """Close the HTTP connection pool (worker shutdown)."""
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    def _require_client(self) -> stripe.StripeClient:
        if self._client is None:
            raise errors.configuration_error(
                "STRIPE_SECRET_KEY is not set on this worker: Stripe cannot be asked for checkout details")
        return self._client

    @activity.defn(name="fetch_stripe_details")
    async def fetch_stripe_details(self, req: StripeDetailsInput) -> StripeDetails:
        """Customer, subscription, price and seats of a checkout session (reference 3.11).

        The session must have a customer (a session still open, or one for a guest payment, has
        none: non-retryable ``StripeIncompleteCheckoutError``). Without a subscription (a one-off
        payment) only the customer is returned and ``license_count`` stays None: the caller's own
        licence count then applies. With one, its first item gives the item id, the price id and the
        quantity (``license_count``; 1 when Stripe gives none, as the original did).
        """
        client = self._require_client()
        session_id = req.checkout_session_id
        if not _SESSION_ID.match(session_id):
            # An empty id would turn "retrieve" into "list all sessions"; anything else is not an id.
            raise errors.validation_error("checkout session id must be 1-255 letters, digits, '_' or '-'")
        async with _stripe_call("checkout session"):
            session = (await client.v1.checkout.sessions.retrieve_async(session_id)).to_dict()
        customer_id = _id_of(session.get("customer"))
        if customer_id is None:
            raise ApplicationError(
                f"checkout session {session_id} has no customer (status {session.get('status')}, payment "
                f"{session.get('payment_status')}): nothing to provision a paying tenant for",
                {"checkoutSessionId": session_id}, type=errors.STRIPE_INCOMPLETE_CHECKOUT, non_retryable=True)
        async with _stripe_call("customer"):
            customer = (await client.v1.customers.retrieve_async(customer_id)).to_dict()
        fields: dict[str, Any] = {"stripe_customer_id": customer_id}
        if not customer.get("deleted"):
            fields.update(customer_email=customer.get("email"), customer_name=customer.get("name"))
        subscription_id = _id_of(session.get("subscription"))
        if subscription_id is not None:
            async with _stripe_call("subscription"):
                subscription = (await client.v1.subscriptions.retrieve_async(
                    subscription_id, params={"expand": ["items.data.price"]})).to_dict()
            fields.update(_subscription_fields(subscription))
        try:
            details = StripeDetails(**fields)
        except pydantic.ValidationError as err:
            # Names the fields only: the input (emails, names) stays out of the message and of history.
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in err.errors(include_input=False, include_url=False))
            raise ApplicationError(
                f"checkout session {session_id}: Stripe's answer cannot be used ({problems})",
                {"checkoutSessionId": session_id}, type=errors.STRIPE_INCOMPLETE_CHECKOUT,
                non_retryable=True) from None
        log.info("stripe checkout details fetched", extra={
            "checkout_session_id": session_id, "stripe_customer_id": details.stripe_customer_id,
            "stripe_subscription_id": details.stripe_subscription_id, "stripe_price_id": details.stripe_price_id,
            "license_count": details.license_count})
        return details

    @activity.defn(name="tag_stripe_subscription")
    async def tag_stripe_subscription(self, req: TagStripeSubscriptionInput) -> None:
        """Set ``metadata[alga_tenant_id]`` on the subscription to the tenant it pays for.

        Idempotent: already set to this tenant, nothing is written; the write itself carries an
        idempotency key, so an attempt retried after Stripe applied it replays Stripe's answer. Set to
        another tenant: non-retryable ``StripeSubscriptionConflictError``, never overwritten (the
        subscription already pays for someone else: an operator must look).
        """
        client = self._require_client()
        subscription_id, tenant = req.stripe_subscription_id, str(req.tenant_id)
        async with _stripe_call("subscription"):
            subscription = (await client.v1.subscriptions.retrieve_async(subscription_id)).to_dict()
        current = (subscription.get("metadata") or {}).get(TENANT_METADATA_KEY)
        if current == tenant:
            log.info("stripe subscription already tagged", extra={
                "stripe_subscription_id": subscription_id, "tenant_id": tenant})
            return
        if current:
            raise ApplicationError(
                f"stripe subscription {subscription_id} is already tagged {TENANT_METADATA_KEY}={current}; "
                f"not overwriting it with {tenant}",
                {"stripeSubscriptionId": subscription_id, "taggedTenantId": current, "tenantId": tenant},
                type=errors.STRIPE_SUBSCRIPTION_CONFLICT, non_retryable=True)
        async with _stripe_call("subscription update"):
            await client.v1.subscriptions.update_async(
                subscription_id, params={"metadata": {TENANT_METADATA_KEY: tenant}},
                options={"idempotency_key": f"alga-worker/tag/{subscription_id}/{tenant}"})
        log.info("stripe subscription tagged", extra={"stripe_subscription_id": subscription_id, "tenant_id": tenant})


    # ---- tenant deletion (issue 13)

    @activity.defn(name="cancel_subscription_for_deletion")
    async def cancel_subscription_for_deletion(self, req: SubscriptionCancellationInput
                                               ) -> SubscriptionCancellationResult:
        """Cancel the subscription **at the end of its period** and mark it with the deletion.

        The original cancelled outright (``subscriptions.cancel``), which no rollback can undo; here
        ``cancel_at_period_end=true`` stops the renewal (the customer is not charged again) and a
        rollback within the grace period restores the subscription exactly: the metadata records the
        deletion id and the prior ``cancel_at_period_end``. Idempotent: a subscription already marked
        with this deletion is reported the same way without a write; the write carries an idempotency
        key per deletion. Already cancelled (status ``canceled``): done, nothing changed. Tagged for
        another tenant (``alga_tenant_id``): non-retryable ``StripeSubscriptionConflictError``.
        """
        client = self._require_client()
        sub_id, deletion = req.stripe_subscription_id, str(req.deletion_id)
        async with _stripe_call("subscription"):
            subscription = (await client.v1.subscriptions.retrieve_async(sub_id)).to_dict()
        metadata = {str(k): str(v) for k, v in (subscription.get("metadata") or {}).items()}
        _refuse_other_tenant(sub_id, metadata, str(req.tenant_id))
        if metadata.get(DELETION_METADATA_KEY) == deletion:
            return _cancelled(subscription, changed=True)
        if subscription.get("status") in ("canceled", "incomplete_expired"):
            return SubscriptionCancellationResult(outcome=StepOutcome(
                status=OutcomeStatus.DONE, detail=f"already {subscription.get('status')} in Stripe: nothing to do"))
        prior = "true" if subscription.get("cancel_at_period_end") else "false"
        async with _stripe_call("subscription update"):
            updated = (await client.v1.subscriptions.update_async(
                sub_id, params={"cancel_at_period_end": True,
                                "metadata": {DELETION_METADATA_KEY: deletion, PRIOR_CANCEL_METADATA_KEY: prior}},
                options={"idempotency_key": f"alga-worker/deletion/{deletion}/cancel/{sub_id}"})).to_dict()
        log.info("stripe subscription set to cancel at period end", extra={
            "stripe_subscription_id": sub_id, "tenant_id": str(req.tenant_id), "deletion_id": deletion})
        return _cancelled(updated, changed=True)

    @activity.defn(name="restore_subscription_after_rollback")
    async def restore_subscription_after_rollback(self, req: SubscriptionCancellationInput
                                                  ) -> SubscriptionCancellationResult:
        """Rollback: the prior ``cancel_at_period_end`` back, the deletion's metadata keys removed. Only
        a subscription marked with *this* deletion is touched; otherwise (restored already, or never
        changed) nothing is written. Idempotent, with its own idempotency key."""
        client = self._require_client()
        sub_id, deletion = req.stripe_subscription_id, str(req.deletion_id)
        async with _stripe_call("subscription"):
            subscription = (await client.v1.subscriptions.retrieve_async(sub_id)).to_dict()
        metadata = {str(k): str(v) for k, v in (subscription.get("metadata") or {}).items()}
        if metadata.get(DELETION_METADATA_KEY) != deletion:
            return SubscriptionCancellationResult(outcome=StepOutcome(
                status=OutcomeStatus.REMOVED, detail="not marked by this deletion: nothing to restore"))
        prior = metadata.get(PRIOR_CANCEL_METADATA_KEY) == "true"
        async with _stripe_call("subscription update"):
            await client.v1.subscriptions.update_async(
                sub_id, params={"cancel_at_period_end": prior,
                                "metadata": {DELETION_METADATA_KEY: "", PRIOR_CANCEL_METADATA_KEY: ""}},
                options={"idempotency_key": f"alga-worker/deletion/{deletion}/restore/{sub_id}"})
        log.info("stripe subscription restored after a deletion rollback", extra={
            "stripe_subscription_id": sub_id, "tenant_id": str(req.tenant_id), "deletion_id": deletion})
        return SubscriptionCancellationResult(changed=True, outcome=StepOutcome(
            status=OutcomeStatus.REMOVED, detail=f"restored: cancel_at_period_end {str(prior).lower()}"))


def _refuse_other_tenant(subscription_id: str, metadata: Mapping[str, str], tenant: str) -> None:
    current = metadata.get(TENANT_METADATA_KEY)
    if current and current != tenant:
        raise ApplicationError(
            f"stripe subscription {subscription_id} pays for tenant {current}, not {tenant}: not cancelled",
            {"stripeSubscriptionId": subscription_id, "taggedTenantId": current, "tenantId": tenant},
            type=errors.STRIPE_SUBSCRIPTION_CONFLICT, non_retryable=True)


def _cancelled(subscription: Mapping[str, Any], *, changed: bool) -> SubscriptionCancellationResult:
    cancel_at = _timestamp(subscription.get("cancel_at"))
    when = f" (ends {cancel_at.date().isoformat()})" if cancel_at is not None else ""
    return SubscriptionCancellationResult(changed=changed, cancel_at=cancel_at, outcome=StepOutcome(
        status=OutcomeStatus.DONE, detail=f"cancels at period end{when}"))


# ---------------------------------------------------------------- reading Stripe's objects


def _id_of(value: Any) -> str | None:
    """An expandable field: an id, an expanded object (its ``id``), or nothing."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        found = value.get("id")
        return found if isinstance(found, str) and found else None
    return None


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None


def _either(first: Mapping[str, Any], second: Mapping[str, Any], key: str) -> Any:
    found = first.get(key)
    return second.get(key) if found is None else found


def _subscription_fields(subscription: Mapping[str, Any]) -> dict[str, Any]:
    """The subscription's part of :class:`StripeDetails`: first item, seats, status, period, metadata."""
    items = (subscription.get("items") or {}).get("data") or []
    item: Mapping[str, Any] = items[0] if items else {}
    fields: dict[str, Any] = {
        "stripe_subscription_id": subscription.get("id"),
        "status": subscription.get("status"),
        "currency": subscription.get("currency"),
        "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
        "metadata": {str(k): str(v) for k, v in (subscription.get("metadata") or {}).items()},
        # acacia and earlier: on the subscription; basil and later: on each item.
        "current_period_start": _timestamp(_either(subscription, item, "current_period_start")),
        "current_period_end": _timestamp(_either(subscription, item, "current_period_end")),
    }
    if item:
        fields.update(stripe_subscription_item_id=_id_of(item.get("id")), stripe_price_id=_id_of(item.get("price")),
                      # The original: `item.quantity || 1` (a metered price has no quantity).
                      license_count=item.get("quantity") or 1)
    return fields


# ---------------------------------------------------------------- error classification


# The metric label of each call (``alga_stripe_requests_total{operation}``), by what it asks for.
_OPERATIONS: dict[str, str] = {
    "checkout session": "retrieve_checkout_session", "customer": "retrieve_customer",
    "subscription": "retrieve_subscription", "subscription update": "update_subscription",
}


@asynccontextmanager
async def _stripe_call(what: str) -> AsyncIterator[None]:
    """Turn the SDK's exceptions into typed activity failures, unchained (see the module docstring),
    and count the call by its outcome."""
    import stripe  # loaded already: a call needs a client, and building one imported it

    operation = _OPERATIONS.get(what, metrics.OTHER)
    try:
        yield
    except stripe.StripeError as err:
        classified = classify_stripe_error(err, what)
        record(metrics.STRIPE_REQUESTS, operation=operation, outcome=call_outcome(classified))
        raise classified from None
    record(metrics.STRIPE_REQUESTS, operation=operation, outcome=call_outcome(None))


def classify_stripe_error(err: stripe.StripeError, what: str) -> ApplicationError:
    """The typed failure for a Stripe SDK error raised while reading or writing ``what``."""
    import stripe

    headers = {str(k).lower(): str(v) for k, v in (err.headers or {}).items()}
    facts: dict[str, Any] = {"httpStatus": err.http_status, "stripeCode": _code(err), "requestId": err.request_id}
    facts = {k: v for k, v in facts.items() if v is not None}
    label = f"{err.http_status} " if err.http_status else ""
    if isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        # Stripe's message quotes part of the key: the variable is named, the message is not repeated.
        reason = ("is not a valid API key (wrong, revoked, or of another Stripe account)"
                  if isinstance(err, stripe.AuthenticationError) else
                  "lacks the permission for it (a restricted key without read/write on subscriptions?)")
        return ApplicationError(f"Stripe refused the {what} request ({label.strip() or 'auth'}): the worker's "
                                f"STRIPE_SECRET_KEY {reason}", facts, type=errors.STRIPE_AUTH, non_retryable=True)
    message = f"Stripe {label}on the {what} request: {_stripe_message(err)}"
    should_retry = headers.get("stripe-should-retry")
    retryable = isinstance(err, stripe.RateLimitError | stripe.APIConnectionError) or (
        isinstance(err, stripe.APIError) and (err.http_status is None or err.http_status >= 500
                                              or err.http_status == 409))
    if should_retry in ("true", "false"):  # Stripe's own verdict on retrying this exact request wins
        retryable = should_retry == "true"
    if retryable:
        return ApplicationError(message, facts, type=errors.STRIPE_UNAVAILABLE,
                                next_retry_delay=_retry_after(headers.get("retry-after")))
    return ApplicationError(message, facts, type=errors.STRIPE_REJECTED, non_retryable=True)


def _code(err: stripe.StripeError) -> str | None:
    """Stripe's error code (``resource_missing``, ``rate_limit`` ...): not every SDK error class copies it."""
    if err.code:
        return err.code
    body = err.error
    return body.code if body is not None and isinstance(body.code, str) else None


def _stripe_message(err: stripe.StripeError) -> str:
    code = f" ({_code(err)})" if _code(err) else ""
    text = " ".join(str(err.user_message or type(err).__name__).split())[:300]
    return _KEY_LIKE.sub("[REDACTED]", f"{type(err).__name__}{code}: {text}")


def _retry_after(value: str | None) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent, unreadable or in the past."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return min(timedelta(seconds=seconds), _MAX_RETRY_DELAY)
