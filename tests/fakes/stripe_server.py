"""A fake Stripe API: a real HTTP server on 127.0.0.1 speaking the REST protocol the ``stripe`` SDK uses.

What it reproduces, from Stripe's API reference, because the worker depends on each point:

* authentication: ``Authorization: Bearer <secret key>``; a missing or wrong key answers 401 with
  Stripe's error envelope (``{"error": {"type": "invalid_request_error", "message": ...}}``), the
  message quoting the key masked as Stripe does (``sk_test_****1234``);
* the endpoints ``GET /v1/checkout/sessions/{id}``, ``GET /v1/customers/{id}``,
  ``GET /v1/subscriptions/{id}`` (each item with its price object, as Stripe returns it; the
  ``expand[]``/``expand[0]`` parameters the SDK sends are accepted and recorded) and ``POST
  /v1/subscriptions/{id}`` with form-encoded ``metadata[key]=value`` (an empty value deletes the key;
  other keys are kept) and ``cancel_at_period_end=true|false`` (sets ``cancel_at`` to the period end and
  ``canceled_at`` to now, or clears both; on a ``canceled`` subscription only metadata may change: 400
  ``invalid_request_error``); any other parameter answers 400 ``parameter_unknown``;
* ``Idempotency-Key`` on POST: the same key replays the first answer without a second write;
* ``Stripe-Version``: subscriptions before ``2025-03-31`` carry ``current_period_start``/``_end`` on
  the subscription, later versions on each item (Stripe's "basil" change);
* errors: an unknown id answers 404 ``resource_missing`` (``invalid_request_error``);
  :meth:`FakeStripeServer.rate_limit_next` answers 429 ``rate_limit`` (with ``Stripe-Should-Retry:
  true`` and an optional ``Retry-After``); :meth:`FakeStripeServer.fail_next` answers 5xx
  ``api_error``; every answer has a ``Request-Id``.

Every request is recorded (method, path, query, form, headers) for assertions. Start it with ``with
FakeStripeServer() as stripe:`` and point ``STRIPE_API_BASE`` at ``stripe.url``.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# Stripe's switch of the billing period from the subscription to its items (API version 2025-03-31.basil).
_ITEM_PERIOD_SINCE = "2025-03-31"
_DEFAULT_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it: names of headers lower-cased, form and query decoded."""

    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class _Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _State:
    api_key: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    scripted: deque[_Scripted] = field(default_factory=deque)
    idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    writes: list[ReceivedRequest] = field(default_factory=list)


def _stripe_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class FakeStripeServer:
    """A threaded HTTP server on an ephemeral loopback port; a context manager."""

    def __init__(self, api_key: str = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc") -> None:
        self._state = _State(api_key=api_key)
        state = self._state

        class Handler(_StripeHandler):
            shared = state

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll interval only so that shutdown() returns quickly; requests are served at once.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-stripe", daemon=True)

    # ------------------------------------------------------------ lifecycle and inspection

    @property
    def api_key(self) -> str:
        return self._state.api_key

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received, refused ones included, in arrival order."""
        with self._state.lock:
            return list(self._state.requests)

    def writes(self) -> list[ReceivedRequest]:
        """The POSTs that changed something (not refused, not replayed)."""
        with self._state.lock:
            return list(self._state.writes)

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        """The stored subscription (items hold price ids here; a GET returns the price objects)."""
        with self._state.lock:
            return copy.deepcopy(self._state.subscriptions[subscription_id])

    def start(self) -> FakeStripeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> FakeStripeServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    def add_session(self, *, email: str | None = "billing@acme.test", name: str | None = "Acme IT",
                    with_customer: bool = True, with_subscription: bool = True, quantity: int | None = 5,
                    price_id: str | None = None, status: str = "active", currency: str = "usd",
                    cancel_at_period_end: bool = False, metadata: dict[str, str] | None = None,
                    items: int = 1) -> dict[str, str]:
        """A completed Checkout Session, with its customer and (optionally) its subscription.

        Returns the ids created: ``session``, and when present ``customer``, ``subscription``,
        ``item`` and ``price``. ``quantity=None`` leaves the item's quantity out (as Stripe does for
        metered prices); ``items=0`` makes a subscription without items.
        """
        now = int(time.time())
        ids: dict[str, str] = {"session": _stripe_id("cs_test")}
        customer_id = _stripe_id("cus") if with_customer else None
        with self._state.lock:
            if customer_id is not None:
                ids["customer"] = customer_id
                self._state.customers[customer_id] = {
                    "id": customer_id, "object": "customer", "email": email, "name": name, "created": now,
                    "livemode": False, "metadata": {}, "currency": currency, "delinquent": False,
                    "invoice_settings": {"default_payment_method": _stripe_id("pm")},
                }
            subscription_id = None
            if with_subscription:
                subscription_id = _stripe_id("sub")
                ids["subscription"] = subscription_id
                price = price_id or _stripe_id("price")
                ids["price"] = price
                self._state.prices.setdefault(price, {
                    "id": price, "object": "price", "active": True, "currency": currency,
                    "unit_amount": 2900, "type": "recurring", "product": _stripe_id("prod"),
                    "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
                    "livemode": False, "metadata": {},
                })
                data = []
                for _ in range(items):
                    item: dict[str, Any] = {"id": _stripe_id("si"), "object": "subscription_item", "price": price,
                                            "subscription": subscription_id, "created": now, "metadata": {}}
                    if quantity is not None:
                        item["quantity"] = quantity
                    data.append(item)
                if data:
                    ids["item"] = data[0]["id"]
                self._state.subscriptions[subscription_id] = {
                    "id": subscription_id, "object": "subscription", "customer": customer_id, "status": status,
                    "currency": currency, "cancel_at_period_end": cancel_at_period_end,
                    "cancel_at": None, "canceled_at": None, "created": now,
                    "current_period_start": now, "current_period_end": now + 30 * 86400,
                    "default_payment_method": _stripe_id("pm"), "livemode": False,
                    "metadata": dict(metadata or {}),
                    "items": {"object": "list", "data": data, "has_more": False, "total_count": len(data),
                              "url": f"/v1/subscription_items?subscription={subscription_id}"},
                }
            self._state.sessions[ids["session"]] = {
                "id": ids["session"], "object": "checkout.session", "mode": "subscription" if with_subscription
                else "payment", "status": "complete", "payment_status": "paid", "customer": customer_id,
                "subscription": subscription_id, "currency": currency, "amount_total": 14500, "livemode": False,
                "customer_details": {"email": email, "name": name, "phone": None,
                                     "address": {"country": "DE", "postal_code": "10115"}},
                "payment_method_types": ["card"], "metadata": {}, "created": now,
            }
        return ids

    def rate_limit_next(self, count: int, *, retry_after: str | None = None) -> None:
        """Answer the next ``count`` authenticated requests with Stripe's 429 ``rate_limit``."""
        headers = {"Stripe-Should-Retry": "true"}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        body = {"error": {"code": "rate_limit", "type": "invalid_request_error",
                          "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
                          "message": "Request rate limit exceeded. Learn more about rate limits here "
                                     "https://stripe.com/docs/rate-limits."}}
        with self._state.lock:
            self._state.scripted.extend(_Scripted(429, body, headers) for _ in range(count))

    def fail_next(self, count: int, status: int = 500, *, error_type: str = "api_error", code: str | None = None,
                  message: str = "An unknown error occurred", should_retry: bool | None = None) -> None:
        """Answer the next ``count`` authenticated requests with a Stripe error (default: a 500
        ``api_error``); ``should_retry`` adds Stripe's ``Stripe-Should-Retry`` verdict."""
        error: dict[str, Any] = {"type": error_type, "message": message}
        if code is not None:
            error["code"] = code
        headers = {} if should_retry is None else {"Stripe-Should-Retry": "true" if should_retry else "false"}
        with self._state.lock:
            self._state.scripted.extend(_Scripted(status, {"error": error}, headers) for _ in range(count))


class _StripeHandler(BaseHTTPRequestHandler):
    shared: _State
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------ plumbing

    def _reply(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
        self.send_header("Stripe-Version", self.headers.get("Stripe-Version") or _DEFAULT_VERSION)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _missing(self, kind: str, object_id: str, param: str = "id") -> None:
        self._reply(404, {"error": {
            "code": "resource_missing", "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
            "message": f"No such {kind}: '{object_id}'", "param": param, "type": "invalid_request_error"}})

    def _receive(self, method: str) -> ReceivedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        parts = urlsplit(self.path)
        request = ReceivedRequest(
            method=method, path=unquote(parts.path),
            query=parse_qsl(parts.query, keep_blank_values=True),
            form=parse_qsl(raw, keep_blank_values=True) if method == "POST" else [],
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        with self.shared.lock:
            self.shared.requests.append(request)
        return request

    def _authenticated(self, request: ReceivedRequest) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            self._reply(401, {"error": {
                "type": "invalid_request_error",
                "message": "You did not provide an API key. You need to provide your API key in the Authorization "
                           "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."}})
            return False
        key = auth[len("Bearer "):]
        if key != self.shared.api_key:
            masked = f"{key[:8]}{'*' * max(len(key) - 12, 0)}{key[-4:]}" if len(key) > 12 else "****"
            self._reply(401, {"error": {"type": "invalid_request_error",
                                        "message": f"Invalid API Key provided: {masked}"}})
            return False
        return True

    def _scripted(self) -> bool:
        with self.shared.lock:
            scripted = self.shared.scripted.popleft() if self.shared.scripted else None
        if scripted is None:
            return False
        self._reply(scripted.status, scripted.body, scripted.headers)
        return True

    # ------------------------------------------------------------ endpoints

    def do_GET(self) -> None:
        request = self._receive("GET")
        if not self._authenticated(request) or self._scripted():
            return
        segments = request.path.strip("/").split("/")
        state = self.shared
        with state.lock:
            if segments[:3] == ["v1", "checkout", "sessions"] and len(segments) == 4:
                found = copy.deepcopy(state.sessions.get(segments[3]))
                kind, param = "checkout.session", "session"
            elif segments[:2] == ["v1", "customers"] and len(segments) == 3:
                found = copy.deepcopy(state.customers.get(segments[2]))
                kind, param = "customer", "id"
            elif segments[:2] == ["v1", "subscriptions"] and len(segments) == 3:
                found = copy.deepcopy(state.subscriptions.get(segments[2]))
                kind, param = "subscription", "id"
                if found is not None:
                    found = self._render_subscription(found, request)
            else:
                self._reply(404, {"error": {"type": "invalid_request_error",
                                            "message": f"Unrecognized request URL (GET: {request.path})."}})
                return
        if found is None:
            self._missing(kind, segments[-1], param)
            return
        self._reply(200, found)

    def do_POST(self) -> None:
        request = self._receive("POST")
        if not self._authenticated(request) or self._scripted():
            return
        segments = request.path.strip("/").split("/")
        if segments[:2] != ["v1", "subscriptions"] or len(segments) != 3:
            self._reply(404, {"error": {"type": "invalid_request_error",
                                        "message": f"Unrecognized request URL (POST: {request.path})."}})
            return
        key = request.headers.get("idempotency-key")
        state = self.shared
        with state.lock:
            if key is not None and key in state.idempotent:
                status, payload = state.idempotent[key]
                replay = True
            else:
                replay = False
                status, payload = self._update_subscription(segments[2], request)
                if key is not None:
                    state.idempotent[key] = (status, payload)
                if status == 200:
                    state.writes.append(request)
        self._reply(status, payload, {"Idempotent-Replayed": "true"} if replay else None)

    # ------------------------------------------------------------ objects (called with the lock held)

    def _update_subscription(self, subscription_id: str, request: ReceivedRequest) -> tuple[int, dict[str, Any]]:
        stored = self.shared.subscriptions.get(subscription_id)
        if stored is None:
            return 404, {"error": {"code": "resource_missing", "param": "id", "type": "invalid_request_error",
                                   "message": f"No such subscription: '{subscription_id}'"}}
        if stored["status"] == "canceled" and any(not n.startswith(("metadata[", "expand[")) for n, _ in request.form):
            return 400, {"error": {"type": "invalid_request_error", "message": "A canceled subscription can only "
                                   "update its cancellation_details and metadata."}}
        for name, value in request.form:
            if name == "cancel_at_period_end" and value in ("true", "false"):
                stored["cancel_at_period_end"] = value == "true"
                stored["cancel_at"] = stored["current_period_end"] if value == "true" else None
                stored["canceled_at"] = int(time.time()) if value == "true" else None
            elif name.startswith("metadata[") and name.endswith("]"):
                meta_key = name[len("metadata["):-1]
                if value == "":
                    stored["metadata"].pop(meta_key, None)
                else:
                    stored["metadata"][meta_key] = value
            elif name.startswith("expand["):
                continue
            else:
                return 400, {"error": {"code": "parameter_unknown", "param": name, "type": "invalid_request_error",
                                       "message": f"Received unknown parameter: {name}"}}
        return 200, self._render_subscription(copy.deepcopy(stored), request)

    def _render_subscription(self, subscription: dict[str, Any], request: ReceivedRequest) -> dict[str, Any]:
        version = request.headers.get("stripe-version") or _DEFAULT_VERSION
        start, end = subscription["current_period_start"], subscription["current_period_end"]
        if version >= _ITEM_PERIOD_SINCE:
            del subscription["current_period_start"], subscription["current_period_end"]
        for item in subscription["items"]["data"]:
            if version >= _ITEM_PERIOD_SINCE:
                item["current_period_start"], item["current_period_end"] = start, end
            item["price"] = copy.deepcopy(self.shared.prices[item["price"]])
        return subscription
