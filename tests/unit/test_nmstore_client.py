"""The nm-store client against a real fake nm-store on loopback: exact bytes, signature, idempotency,
error classification, configuration checks and secret-free error text.

Expected bodies are written out literally and signatures recomputed here with the standard library, so
a change of the wire format shows up as a failing byte comparison, not as two sides agreeing on a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from tests.fakes.nmstore_server import CALLBACK_PATH, STATUS_PATH, FakeNmStoreServer, hmac_sha256_hex

from alga_worker import errors
from alga_worker.config import Settings, load_settings
from alga_worker.models import CheckoutStatus, CheckoutStatusReport, NmStoreCallback
from alga_worker.nmstore import (
    MAX_RETRY_AFTER_SECONDS,
    NmStoreClient,
    callback_idempotency_key,
    new_http_client,
    retry_after_seconds,
    safe_error_summary,
    status_idempotency_key,
)

PEPPER = "unit-pepper-4c2f9e-not-real"
DB_PASSWORD = "db-p@ss/word:7"  # URL-encoded inside DATABASE_URL-like text
WORKFLOW_ID = "tenant-creation-1755600000000-abc123def"
SESSION = "cs_test_a1B2c3D4"
TENANT = "6f1c2b1e-0b59-4a53-9f0e-5d1f2f3a4b5c"


@pytest.fixture
def server() -> Iterator[FakeNmStoreServer]:
    with FakeNmStoreServer() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with new_http_client() as client:
        yield client


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {"SECRETS_DIR": str(tmp_path / "no-secrets"), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": PEPPER,
            "DB_PASSWORD_ADMIN": DB_PASSWORD}
    return load_settings({**base, **env})


@pytest.fixture
def settings(tmp_path: Path, server: FakeNmStoreServer) -> Settings:
    return make_settings(tmp_path, NMSTORE_BASE_URL=server.url, INTERNAL_API_SHARED_SECRET=server.internal_secret,
                         TEMPORAL_WEBHOOK_SECRET=server.webhook_secret)


@pytest.fixture
def client(settings: Settings, http: httpx.AsyncClient) -> NmStoreClient:
    return NmStoreClient(settings, http)


def report(status: CheckoutStatus = CheckoutStatus.IN_PROGRESS, **kw: object) -> CheckoutStatusReport:
    return CheckoutStatusReport.model_validate({"checkout_session_id": SESSION, "workflow_status": status,
                                                "workflow_id": WORKFLOW_ID, **kw})


def callback(status: CheckoutStatus = CheckoutStatus.COMPLETED, tenant: str | None = TENANT,
             error: str | None = None) -> NmStoreCallback:
    return NmStoreCallback(session_id=SESSION, alga_tenant_id=tenant, status=status, error=error,
                           workflow_id=WORKFLOW_ID)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# ---- bytes on the wire ----


async def test_status_report_sends_exact_body_secret_and_idempotency_key(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    delivery = await client.report_status(report())

    [call] = server.status_calls
    assert call.raw_body == (b'{"checkoutSessionId":"cs_test_a1B2c3D4","workflowStatus":"in_progress",'
                             b'"workflowId":"tenant-creation-1755600000000-abc123def"}')
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-internal-secret"] == server.internal_secret
    assert call.headers["idempotency-key"] == sha256_hex(f"checkout-status/{WORKFLOW_ID}/in_progress")
    assert call.status == 200 and not call.duplicate
    assert server.last_status(SESSION) == "in_progress"
    assert (delivery.kind, delivery.status, delivery.http_status) == ("status", CheckoutStatus.IN_PROGRESS, 200)
    assert delivery.idempotency_key == call.headers["idempotency-key"]
    assert abs((datetime.now(UTC) - delivery.delivered_at).total_seconds()) < 60


async def test_completed_report_carries_completion_time_as_javascript_writes_it(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    # 14:34:56.789123 at UTC+02:00 is 12:34:56.789Z; microseconds are cut to milliseconds like toISOString.
    completed = datetime(2025, 8, 19, 14, 34, 56, 789123, tzinfo=timezone(timedelta(hours=2)))
    await client.report_status(report(CheckoutStatus.COMPLETED, workflow_completed_at=completed))
    [call] = server.status_calls
    assert call.raw_body == (b'{"checkoutSessionId":"cs_test_a1B2c3D4","workflowStatus":"completed",'
                             b'"workflowId":"tenant-creation-1755600000000-abc123def",'
                             b'"workflowCompletedAt":"2025-08-19T12:34:56.789Z"}')


async def test_failed_report_carries_the_error_and_never_a_completion_time(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    await client.report_status(report(CheckoutStatus.FAILED, error="Provisioning failed:\n\tduplicate",
                                      workflow_completed_at=datetime(2025, 1, 1, tzinfo=UTC)))
    [call] = server.status_calls
    assert call.raw_body == (b'{"checkoutSessionId":"cs_test_a1B2c3D4","workflowStatus":"failed",'
                             b'"workflowId":"tenant-creation-1755600000000-abc123def",'
                             b'"error":"Provisioning failed: duplicate"}')


async def test_callback_body_and_signature_byte_for_byte(client: NmStoreClient,
                                                         server: FakeNmStoreServer) -> None:
    delivery = await client.send_callback(callback())
    [call] = server.callback_calls
    expected = b'{"sessionId":"cs_test_a1B2c3D4","algaTenantId":"' + TENANT.encode() + b'","status":"completed"}'
    assert call.raw_body == expected
    signature = hmac.new(server.webhook_secret.encode(), expected, hashlib.sha256).hexdigest()
    assert call.headers["x-temporal-signature"] == signature == hmac_sha256_hex(server.webhook_secret.encode(),
                                                                                expected)
    assert call.headers["content-type"] == "application/json"
    assert "x-internal-secret" not in call.headers
    assert call.headers["idempotency-key"] == sha256_hex(f"checkout-callback/{WORKFLOW_ID}/completed")
    assert call.status == 200
    assert server.callbacks_for(SESSION) == [{"sessionId": SESSION, "algaTenantId": TENANT, "status": "completed"}]
    assert (delivery.kind, delivery.http_status) == ("callback", 200)


async def test_failed_callback_has_null_tenant_and_utf8_error_as_json_stringify_writes_it(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    await client.send_callback(callback(CheckoutStatus.FAILED, tenant=None, error='Zürich "MSP" ✓ \\ failed'))
    [call] = server.callback_calls
    # JSON.stringify({sessionId, algaTenantId: null, status, error}) gives exactly these UTF-8 bytes.
    expected = ('{"sessionId":"cs_test_a1B2c3D4","algaTenantId":null,"status":"failed",'
                '"error":"Zürich \\"MSP\\" ✓ \\\\ failed"}').encode()
    assert call.raw_body == expected
    assert call.headers["x-temporal-signature"] == hmac.new(server.webhook_secret.encode(), expected,
                                                            hashlib.sha256).hexdigest()
    assert call.status == 200


def test_idempotency_keys_are_stable_per_run_and_status_and_distinct_otherwise() -> None:
    keys = {(kind, status): fn(WORKFLOW_ID, status)
            for kind, fn in (("status", status_idempotency_key), ("callback", callback_idempotency_key))
            for status in CheckoutStatus}
    assert len(set(keys.values())) == len(keys) == 6
    for (kind, status), key in keys.items():
        namespace = "checkout-status" if kind == "status" else "checkout-callback"
        assert key == sha256_hex(f"{namespace}/{WORKFLOW_ID}/{status.value}")
        assert len(key) == 64 and key == key.lower()
    assert status_idempotency_key(WORKFLOW_ID, "completed") == keys[("status", CheckoutStatus.COMPLETED)]
    assert status_idempotency_key("other-workflow", CheckoutStatus.COMPLETED) != keys[("status",
                                                                                     CheckoutStatus.COMPLETED)]


async def test_a_repeat_is_the_same_request_and_nm_store_answers_it_once(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    first = await client.report_status(report(CheckoutStatus.COMPLETED,
                                              workflow_completed_at=datetime(2025, 8, 19, tzinfo=UTC)))
    second = await client.report_status(report(CheckoutStatus.COMPLETED,
                                               workflow_completed_at=datetime(2025, 8, 19, tzinfo=UTC)))
    one, two = server.status_calls
    assert one.raw_body == two.raw_body and one.idempotency_key == two.idempotency_key
    assert (one.duplicate, two.duplicate) == (False, True)
    assert server.status_history(SESSION) == ["completed"]
    assert first.idempotency_key == second.idempotency_key and second.http_status == 200


# ---- error classification ----


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_outages_and_rate_limits_are_retryable(client: NmStoreClient, server: FakeNmStoreServer,
                                                     status: int) -> None:
    server.fail_next(1, status)
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    err = info.value
    assert err.type == errors.NMSTORE_UNAVAILABLE and not err.non_retryable
    assert err.next_retry_delay is None
    assert f"HTTP {status}" in err.message
    assert errors.NMSTORE_UNAVAILABLE not in errors.NON_RETRYABLE_TYPES
    # The next attempt goes through, with the same key.
    await client.report_status(report())
    refused, accepted = server.status_calls
    assert refused.idempotency_key == accepted.idempotency_key and accepted.status == 200


async def test_retry_after_seconds_sets_the_next_retry_delay(client: NmStoreClient,
                                                             server: FakeNmStoreServer) -> None:
    server.fail_next(1, 429, retry_after="7")
    with pytest.raises(ApplicationError) as info:
        await client.send_callback(callback())
    assert info.value.type == errors.NMSTORE_UNAVAILABLE and not info.value.non_retryable
    assert info.value.next_retry_delay == timedelta(seconds=7)


async def test_retry_after_http_date_sets_the_next_retry_delay(client: NmStoreClient,
                                                               server: FakeNmStoreServer) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=120)
    server.fail_next(1, 503, retry_after=format_datetime(when, usegmt=True))
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    delay = info.value.next_retry_delay
    assert delay is not None and timedelta(seconds=90) < delay <= timedelta(seconds=120)


async def test_a_huge_retry_after_is_capped(client: NmStoreClient, server: FakeNmStoreServer) -> None:
    server.fail_next(1, 503, retry_after="86400")
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    assert info.value.next_retry_delay == timedelta(seconds=MAX_RETRY_AFTER_SECONDS)


def test_retry_after_parsing() -> None:
    now = datetime(2025, 8, 19, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("3", now) == 3.0
    assert retry_after_seconds(" 1.5 ", now) == 1.5
    assert retry_after_seconds("Tue, 19 Aug 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Tue, 19 Aug 2025 11:00:00 GMT", now) == 0.0  # in the past: at once
    assert retry_after_seconds("-5", now) == 0.0
    assert retry_after_seconds("100000", now) == MAX_RETRY_AFTER_SECONDS
    for unreadable in (None, "", "soon", "nan"):
        assert retry_after_seconds(unreadable, now) is None


async def test_nm_store_down_then_up(client: NmStoreClient, server: FakeNmStoreServer) -> None:
    server.down()
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    assert info.value.type == errors.NMSTORE_UNAVAILABLE and not info.value.non_retryable
    server.up()
    assert (await client.report_status(report())).http_status == 200
    assert [c.status for c in server.status_calls] == [503, 200]


async def test_a_hung_nm_store_is_a_retryable_timeout(settings: Settings, http: httpx.AsyncClient,
                                                      server: FakeNmStoreServer) -> None:
    server.hold_next(1)
    impatient = NmStoreClient(settings, http, total_timeout=0.3)
    try:
        with pytest.raises(ApplicationError) as info:
            await impatient.report_status(report())
    finally:
        server.release()
    assert info.value.type == errors.NMSTORE_UNAVAILABLE and not info.value.non_retryable
    assert "time limit" in info.value.message


async def test_connection_refused_is_retryable(tmp_path: Path, http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed = make_settings(tmp_path, NMSTORE_BASE_URL=f"http://127.0.0.1:{port}",
                           INTERNAL_API_SHARED_SECRET="internal-secret-x1", TEMPORAL_WEBHOOK_SECRET="webhook-x1")
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(closed, http).send_callback(callback())
    assert info.value.type == errors.NMSTORE_UNAVAILABLE and not info.value.non_retryable
    assert "ConnectError" in info.value.message


async def test_wrong_internal_secret_is_a_non_retryable_auth_error_naming_the_variable(
        tmp_path: Path, http: httpx.AsyncClient, server: FakeNmStoreServer) -> None:
    wrong = "wrong-internal-secret-91f3"
    settings = make_settings(tmp_path, NMSTORE_BASE_URL=server.url, INTERNAL_API_SHARED_SECRET=wrong,
                             TEMPORAL_WEBHOOK_SECRET=server.webhook_secret)
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(settings, http).report_status(report())
    err = info.value
    assert err.type == errors.NMSTORE_AUTH and err.non_retryable and errors.NMSTORE_AUTH in errors.NON_RETRYABLE_TYPES
    assert "INTERNAL_API_SHARED_SECRET" in err.message and "403" in err.message
    assert wrong not in str(err) + repr(err.details) and server.internal_secret not in str(err)
    assert [c.status for c in server.status_calls] == [403]


async def test_wrong_webhook_secret_is_a_non_retryable_auth_error_naming_the_variable(
        tmp_path: Path, http: httpx.AsyncClient, server: FakeNmStoreServer) -> None:
    wrong = "wrong-webhook-secret-0d7a"
    settings = make_settings(tmp_path, NMSTORE_BASE_URL=server.url,
                             INTERNAL_API_SHARED_SECRET=server.internal_secret, TEMPORAL_WEBHOOK_SECRET=wrong)
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(settings, http).send_callback(callback())
    err = info.value
    assert err.type == errors.NMSTORE_AUTH and err.non_retryable
    assert "TEMPORAL_WEBHOOK_SECRET" in err.message and "X-Temporal-Signature" in err.message
    assert wrong not in str(err) + repr(err.details)
    assert [c.status for c in server.callback_calls] == [403]


async def test_a_401_is_an_auth_error_too(client: NmStoreClient, server: FakeNmStoreServer) -> None:
    server.fail_next(1, 401)
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    assert info.value.type == errors.NMSTORE_AUTH and info.value.non_retryable
    assert "INTERNAL_API_SHARED_SECRET" in info.value.message


async def test_other_4xx_is_rejected_with_a_bounded_redacted_summary(
        client: NmStoreClient, server: FakeNmStoreServer, settings: Settings) -> None:
    # nm-store's validation error echoing the request, secret and pepper included, and a lot of it.
    echoed = f'{{"error":"bad request","echo":"{server.internal_secret} {PEPPER}","pad":"{"x" * 5000}"}}'
    server.reply_next(422, echoed.encode())
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    err = info.value
    assert err.type == errors.NMSTORE_REJECTED and err.non_retryable
    assert errors.NMSTORE_REJECTED in errors.NON_RETRYABLE_TYPES
    assert "HTTP 422" in err.message and "bad request" in err.message and "[REDACTED]" in err.message
    for secret in settings.secret_values():
        assert secret not in err.message
    assert len(err.message) < 700


async def test_an_invalid_body_is_rejected_by_nm_store(client: NmStoreClient, server: FakeNmStoreServer) -> None:
    # nm-store's callback takes completed or failed only: in_progress is refused with a 400.
    with pytest.raises(ApplicationError) as info:
        await client.send_callback(callback(CheckoutStatus.IN_PROGRESS))
    assert info.value.type == errors.NMSTORE_REJECTED and info.value.non_retryable
    assert "HTTP 400" in info.value.message and "status must be completed or failed" in info.value.message


async def test_a_redirect_is_not_followed(client: NmStoreClient, server: FakeNmStoreServer) -> None:
    server.reply_next(302, b"", headers=(("Location", "http://elsewhere.invalid/steal"),))
    with pytest.raises(ApplicationError) as info:
        await client.report_status(report())
    assert info.value.type == errors.NMSTORE_REJECTED and "redirect not followed" in info.value.message
    assert len(server.calls) == 1


# ---- configuration ----


async def test_missing_status_settings_fail_before_any_request(tmp_path: Path, http: httpx.AsyncClient,
                                                               server: FakeNmStoreServer) -> None:
    bare = make_settings(tmp_path, TEMPORAL_WEBHOOK_SECRET="webhook-secret-only")
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(bare, http).report_status(report())
    err = info.value
    assert err.type == errors.CONFIGURATION_ERROR and err.non_retryable
    assert "NMSTORE_BASE_URL" in err.message and "INTERNAL_API_SHARED_SECRET" in err.message
    assert "webhook-secret-only" not in str(err)
    assert server.calls == []


async def test_missing_callback_settings_fail_before_any_request(tmp_path: Path, http: httpx.AsyncClient,
                                                                 server: FakeNmStoreServer) -> None:
    no_url = make_settings(tmp_path, INTERNAL_API_SHARED_SECRET="internal-only-secret",
                           TEMPORAL_WEBHOOK_SECRET="webhook-secret-77")
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(no_url, http).send_callback(callback())
    assert info.value.type == errors.CONFIGURATION_ERROR and info.value.non_retryable
    assert "NM_STORE_URL" in info.value.message and "TEMPORAL_WEBHOOK_SECRET" not in info.value.message

    no_secret = make_settings(tmp_path, NMSTORE_BASE_URL=server.url,
                              INTERNAL_API_SHARED_SECRET=server.internal_secret)
    with pytest.raises(ApplicationError) as info:
        await NmStoreClient(no_secret, http).send_callback(callback())
    assert info.value.type == errors.CONFIGURATION_ERROR
    assert "TEMPORAL_WEBHOOK_SECRET" in info.value.message and "NM_STORE_URL" not in info.value.message
    assert server.calls == []


async def test_callback_goes_to_nm_store_url_when_set(tmp_path: Path, http: httpx.AsyncClient,
                                                      server: FakeNmStoreServer) -> None:
    with FakeNmStoreServer() as status_only:
        split = make_settings(tmp_path, NMSTORE_BASE_URL=status_only.url + "/", NM_STORE_URL=server.url + "/",
                              INTERNAL_API_SHARED_SECRET=status_only.internal_secret,
                              TEMPORAL_WEBHOOK_SECRET=server.webhook_secret)
        nmstore = NmStoreClient(split, http)
        await nmstore.send_callback(callback())
        await nmstore.report_status(report())
        assert [c.path for c in server.calls] == [CALLBACK_PATH]
        assert [c.path for c in status_only.calls] == [STATUS_PATH]


# ---- secret-free error text ----


async def test_error_field_is_redacted_and_bounded_before_it_is_sent(
        client: NmStoreClient, server: FakeNmStoreServer) -> None:
    leaky = (f"connect to postgresql://postgres:{DB_PASSWORD}@db:5432/server failed; pepper {PEPPER}; "
             f"url-encoded {DB_PASSWORD.replace('@', '%40').replace('/', '%2F').replace(':', '%3A')} " + "y" * 700)
    await client.report_status(report(CheckoutStatus.FAILED, error=leaky))
    await client.send_callback(callback(CheckoutStatus.FAILED, tenant=None, error=leaky))
    for call in server.calls:
        assert call.status == 200
        text = call.raw_body.decode()
        assert DB_PASSWORD not in text and PEPPER not in text and "p%40ss" not in text
        assert "postgresql://[REDACTED]@db:5432/server" in text
        assert len(call.json["error"]) == 500 and call.json["error"].endswith("…")


def test_safe_error_summary() -> None:
    secret = 'se"cr\\et-value'
    assert safe_error_summary(f"a {secret} b", [secret]) == "a [REDACTED] b"
    assert safe_error_summary('json: "se\\"cr\\\\et-value"', [secret]) == 'json: "[REDACTED]"'
    assert safe_error_summary("line1\r\nline2\x00\x1b[31m\u202e\u2028end", []) == "line1 line2 [31m end"
    assert safe_error_summary("https://user:pw@host/x and http://host/y", []) == \
        "https://[REDACTED]@host/x and http://host/y"
    assert safe_error_summary("abc", ["ab"]) == "abc"  # too short to redact without shredding words
    long = safe_error_summary("z" * 2000, [])
    assert len(long) == 500 and long.endswith("…")
    assert safe_error_summary("x" * 20, [], limit=10) == "x" * 9 + "…"
    # A secret cut by the length limit is never half-shown: redaction happens before truncation.
    assert "secret-token" not in safe_error_summary("q" * 495 + "secret-token-123", ["secret-token-123"])


def _threads() -> set[threading.Thread]:
    """Live threads, without the event loop's own executor (``asyncio.to_thread`` workers)."""
    return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def test_the_fake_leaves_no_thread_behind_even_with_open_keep_alive_connections() -> None:
    before = _threads()
    fake = FakeNmStoreServer().start()
    async with new_http_client() as keep_alive:  # its pooled connection is still open at stop()
        response = await keep_alive.post(fake.url + STATUS_PATH, content=b"{}",
                                         headers={"X-Internal-Secret": fake.internal_secret,
                                                  "Content-Type": "application/json"})
        assert response.status_code == 400
        fake.hold_next(1)
        held = asyncio.create_task(keep_alive.post(fake.url + CALLBACK_PATH, content=b"{}"))
        assert await asyncio.to_thread(fake.wait_until_held)
        await asyncio.to_thread(fake.stop)  # releases the held request, cuts idle connections, joins
        assert _threads() - before == set()
        with contextlib.suppress(httpx.HTTPError):
            await held
