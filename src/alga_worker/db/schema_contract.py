"""The schema contract: the tables and columns the worker reads and writes, declared once.

INTERFACE (owned by the schema-contract work; the health monitor and `alga-worker check` call it):

    async def verify_schema(conn: psycopg.AsyncConnection[Any]) -> list[str]

returns one human-readable problem per missing table, missing column or incompatible type (an empty
list when the live database satisfies the contract). It only reads ``information_schema``.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection


async def verify_schema(conn: AsyncConnection[Any]) -> list[str]:
    """Compare the live database with the contract; one message per problem (empty: compatible)."""
    return []
