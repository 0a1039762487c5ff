"""Helpers for the user-workflow tests: real tenants, an independent hash check, secret scans.

Everything here reads the truth from outside the code under test: hashes are recomputed with hashlib
from the worker's settings (not with :mod:`alga_worker.security`), passwords are read from the emailed
message, and histories are scanned as bytes.
"""

from __future__ import annotations

import base64
import email.message
import hashlib
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from tests.support.data import unique_email
from tests.support.history import payloads_of
from tests.support.workers import outbox_messages, text_body

from alga_worker.config import Settings
from alga_worker.models import AdminUserInput, ProvisionTenantInput, ProvisionTenantOutput
from alga_worker.security import CredentialSealer


def alga_hash_matches(password: str, stored: str, settings: Settings) -> bool:
    """Alga's verify written from its spec, not from our code: PBKDF2 with the worker's digest, iterations
    and key length; the salt is the pepper followed by the stored salt's hex."""
    salt_hex, _, derived_hex = stored.partition(":")
    pepper = settings.password_pepper.get_secret_value()
    derived = hashlib.pbkdf2_hmac(settings.algorithm, password.encode(), (pepper + salt_hex).encode(),
                                  settings.iterations, settings.key_length)
    return derived.hex() == derived_hex


def emailed_password(msg: email.message.EmailMessage) -> str:
    """The temporary password printed in any credentials email (welcome, invitation, reset)."""
    match = re.search(r"Temporary password:\s*(\S+)", text_body(msg), re.IGNORECASE)
    assert match, "the email has no 'Temporary password:' line"
    return match.group(1)


async def provision_tenant(activities: dict[str, Any], settings: Settings, *, license_count: int | None = None,
                           name: str | None = None) -> tuple[ProvisionTenantInput, str]:
    """A real tenant (the provisioning activity: 8 roles, an MSP admin with the Admin role) and its
    admin's temporary password."""
    suffix = uuid.uuid4().hex[:8]
    req = ProvisionTenantInput(
        tenant_id=uuid.uuid4(), client_id=uuid.uuid4(), location_id=uuid.uuid4(), admin_user_id=uuid.uuid4(),
        tenant_name=name or f"Users MSP {suffix}", client_name=f"Users MSP {suffix} LLC",
        admin=AdminUserInput(first_name="Ada", last_name="Admin", email=unique_email("admin")),
        license_count=license_count, seal_binding=f"wf-{suffix}/run/provision",
    )
    out: ProvisionTenantOutput = await ActivityEnvironment().run(activities["provision_tenant"], req)
    sealer = CredentialSealer(settings.password_pepper.get_secret_value())
    return req, sealer.open(out.sealed_password, binding=req.seal_binding)


async def user_row(db: psycopg.AsyncConnection[Any], tenant_id: Any, user_id: Any) -> dict[str, Any] | None:
    cur = await db.execute("SELECT * FROM users WHERE tenant = %s AND user_id = %s", (str(tenant_id), str(user_id)))
    row = await cur.fetchone()
    return None if row is None else dict(row)


async def users_with_email(db: psycopg.AsyncConnection[Any], address: str) -> list[dict[str, Any]]:
    cur = await db.execute("SELECT * FROM users WHERE lower(email) = lower(%s)", (address,))
    return [dict(r) for r in await cur.fetchall()]


async def role_names(db: psycopg.AsyncConnection[Any], tenant_id: Any, user_id: Any) -> list[str]:
    cur = await db.execute(
        "SELECT r.role_name FROM user_roles ur JOIN roles r ON r.tenant = ur.tenant AND r.role_id = ur.role_id"
        " WHERE ur.tenant = %s AND ur.user_id = %s ORDER BY r.role_name", (str(tenant_id), str(user_id)))
    return [r["role_name"] for r in await cur.fetchall()]


async def audit_rows(db: psycopg.AsyncConnection[Any], workflow_id: str) -> list[dict[str, Any]]:
    cur = await db.execute("SELECT * FROM extension_audit_logs WHERE workflow_id = %s ORDER BY created_at",
                           (workflow_id,))
    return [dict(r) for r in await cur.fetchall()]


def secret_forms(secret: str) -> list[bytes]:
    """The secret as it could appear anywhere: raw, JSON-escaped, and base64 at each of the three
    alignments (the middle of the encoding of ``pad + secret`` that depends on the secret only)."""
    forms = [secret.encode(), json.dumps(secret)[1:-1].encode()]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + secret.encode())
        start = ((pad + 2) // 3) * 4  # first base64 group made only of secret bytes
        tail = (pad + len(secret.encode())) % 3
        end = len(encoded) - (4 if tail else 0)  # the last group may mix in padding
        core = encoded[start:end]
        if len(core) >= 8:
            forms.append(core)
    return forms


def assert_secret_absent(secret: str, haystacks: Iterable[bytes | str], where: str) -> None:
    for hay in haystacks:
        data = hay.encode() if isinstance(hay, str) else hay
        for form in secret_forms(secret):
            assert form not in data, f"a temporary password appears in {where}"


async def history_haystacks(handle: WorkflowHandle[Any, Any]) -> list[bytes]:
    """The whole history three ways: proto JSON (payloads base64), raw serialized events (payload bytes as
    they are), and every event's payload data."""
    history = await handle.fetch_history()
    assert history.events, "expected a history"
    raw = b"".join(event.SerializeToString() for event in history.events)
    payloads = [p.data for event in history.events for p in payloads_of(event)]
    assert payloads, "expected payloads in history"
    return [history.to_json().encode(), raw, *payloads]




async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """The run's innermost typed failure (the activity's ApplicationError, or the workflow's own)."""
    try:
        await handle.result()
    except WorkflowFailureError as failed:
        cause: BaseException | None = failed.cause
        while isinstance(cause, ActivityError) and cause.cause is not None:
            cause = cause.cause
        assert isinstance(cause, ApplicationError), repr(cause)
        return cause
    raise AssertionError("the run did not fail")


async def activity_attempts(handle: WorkflowHandle[Any, Any], activity_type: str | None = None) -> list[int]:
    """The attempt number of every started attempt of ``activity_type`` (every activity when None; one
    entry per schedule)."""
    history = await handle.fetch_history()
    scheduled = {e.event_id for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and activity_type in (None, e.activity_task_scheduled_event_attributes.activity_type.name)}
    return [e.activity_task_started_event_attributes.attempt for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.scheduled_event_id in scheduled]


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[str]:
    history = await handle.fetch_history()
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


def messages_to(outbox: Path, address: str, subject: str | None = None) -> list[email.message.EmailMessage]:
    """Outbox messages to ``address`` (whose subject contains ``subject``, if given). Outbox file names are
    digests of idempotency keys, so their order says nothing: tell messages apart by subject."""
    return [m for m in outbox_messages(outbox) if str(m["To"]).lower() == address.lower()
            and (subject is None or subject.lower() in str(m["Subject"]).lower())]


def one_message(outbox: Path, address: str, subject: str) -> email.message.EmailMessage:
    found = messages_to(outbox, address, subject)
    assert len(found) == 1, f"expected one message {subject!r} to the address, found {len(found)}"
    return found[0]
