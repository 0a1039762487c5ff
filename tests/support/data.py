"""Test data and database helpers (a module, not conftest, so it is imported exactly once)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg

from alga_worker.db.provisioning import TENANT_TABLES_DELETE_ORDER

# A fixed, obviously fake pepper: tests recompute hashes with it independently.
TEST_PEPPER = "test-pepper-not-a-real-secret-4f1d2c"


async def tenant_row_counts(conn: psycopg.AsyncConnection[Any], tenant_id: str | uuid.UUID) -> dict[str, int]:
    """Rows of one tenant in every table the worker writes (the ground truth for tests)."""
    counts: dict[str, int] = {}
    for table in TENANT_TABLES_DELETE_ORDER:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table} WHERE tenant = %s", (str(tenant_id),))
        row = await cur.fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts


async def all_row_counts(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in TENANT_TABLES_DELETE_ORDER:
        cur = await conn.execute(f"SELECT count(*) AS n FROM {table}")
        row = await cur.fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts


def unique_email(prefix: str = "admin") -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}@example-msp.com"


def tenant_request(**overrides: Any) -> dict[str, Any]:
    """A valid wire-shaped (camelCase) tenantCreationWorkflow input."""
    request: dict[str, Any] = {
        "tenantName": f"Acme MSP {uuid.uuid4().hex[:6]}",
        "adminUser": {"firstName": "Ada", "lastName": "Lovelace", "email": unique_email()},
        "clientName": "Acme Managed Services",
        "licenseCount": 12,
    }
    request.update(overrides)
    return request


def subprocess_env(worker_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A clean child environment: the machine's PATH etc. plus the worker's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DB_", "EMAIL_"))}
    env.update(worker_env)
    env.update(extra)
    return env
