"""classify(): each class of database error, produced by real SQL on the test database.

Every error here comes from the real PostgreSQL server (or the real psycopg client and pool), never a
constructed exception: the classification reads psycopg's diagnostics, so the test must too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.exceptions import ApplicationError

from alga_worker import errors
from alga_worker.activities.db_errors import classify

SECRET_EMAIL = "ada.secret.7f3a@example-msp.com"  # a row value that must never appear in a message


async def failure(awaitable: Awaitable[Any]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as info:
        await awaitable
    return info.value


def classified(exc: BaseException) -> ApplicationError:
    result = classify(exc)
    assert result is not None, f"{type(exc).__name__} ({getattr(exc, 'sqlstate', None)}) not classified"
    return result


def assert_no_values(err: ApplicationError, *values: str) -> None:
    text = f"{err.message} {err.details!r}"
    for value in values:
        assert value not in text


@pytest.fixture
async def table(db: psycopg.AsyncConnection[Any]) -> AsyncIterator[str]:
    """A scratch table (a real one, so a second connection sees it), dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    await db.execute(f"CREATE TABLE {name}_parent (id int PRIMARY KEY)")
    await db.execute(
        f"CREATE TABLE {name} ("
        f" id int PRIMARY KEY,"
        f" parent_id int CONSTRAINT {name}_parent_fk REFERENCES {name}_parent (id),"
        f" email text NOT NULL CONSTRAINT {name}_email_unique UNIQUE,"
        f" code varchar(5),"
        f" qty int CONSTRAINT {name}_qty_positive CHECK (qty > 0))"
    )
    await db.execute(f"INSERT INTO {name} (id, email, qty) VALUES (1, %s, 1), (2, 'other@example.com', 1)",
                     (SECRET_EMAIL,))
    try:
        yield name
    finally:
        await db.execute(f"DROP TABLE {name}, {name}_parent")


@pytest.fixture
async def other(stack: Any) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A second session, for errors that need two (locks, serialization, deadlock)."""
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
        yield conn


# ---------------------------------------------------------------- non-retryable: the row is wrong


async def test_unique_violation_names_constraint_table_and_key_not_the_value(db, table) -> None:
    exc = await failure(db.execute(f"INSERT INTO {table} (id, email) VALUES (3, %s)", (SECRET_EMAIL,)))
    assert exc.sqlstate == "23505" and SECRET_EMAIL in str(exc)  # psycopg's own text quotes the row
    err = classified(exc)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert err.message == (f"unique violation: table {table}, constraint {table}_email_unique, key (email) "
                           "(23505)")
    assert err.details[0]["constraint"] == f"{table}_email_unique" and err.details[0]["table"] == table
    assert_no_values(err, SECRET_EMAIL)


async def test_foreign_key_violation_names_the_referenced_table(db, table) -> None:
    exc = await failure(db.execute(f"INSERT INTO {table} (id, email, parent_id) VALUES (3, 'a@b.c', 424242)"))
    err = classified(exc)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert f"constraint {table}_parent_fk" in err.message
    assert "key (parent_id)" in err.message and f"referenced table {table}_parent" in err.message
    assert_no_values(err, "424242")


async def test_check_violation(db, table) -> None:
    exc = await failure(db.execute(f"UPDATE {table} SET qty = -7 WHERE email = %s", (SECRET_EMAIL,)))
    err = classified(exc)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert err.message == f"check violation: table {table}, constraint {table}_qty_positive (23514)"
    assert_no_values(err, SECRET_EMAIL, "-7")


async def test_not_null_violation_names_the_column(db, table) -> None:
    exc = await failure(db.execute(f"INSERT INTO {table} (id, email) VALUES (3, NULL)"))
    err = classified(exc)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert err.message == f"not-null violation: table {table}, column email (23502)"
    assert err.details[0]["column"] == "email"


async def test_value_too_long(db, table) -> None:
    exc = await failure(db.execute(f"UPDATE {table} SET code = 'toolong-secret' WHERE id = 1"))
    err = classified(exc)
    assert err.type == errors.CONSTRAINT_VIOLATION and err.non_retryable
    assert err.message == "value too long: value too long for type character varying(5) (22001)"
    assert_no_values(err, "toolong-secret")


@pytest.mark.parametrize(("sql", "params", "expected", "secret"), [
    ("SELECT %s::uuid", ("not-a-uuid-secret",), "invalid input syntax for type uuid", "not-a-uuid-secret"),
    ("SELECT %s::text::int", ("99999999999",), 'value "..." is out of range for type integer', "99999999999"),
    ("SELECT 2147483647::int + 1", None, "integer out of range", None),
    ("SELECT 1 / 0", None, "division by zero", None),
    ("SELECT %s::text::date", ("2025-13-45",), "date/time field value out of range", "2025-13-45"),
])
async def test_data_exceptions_are_invalid_data_without_the_value(db, sql, params, expected, secret) -> None:
    exc = await failure(db.execute(sql, params))
    assert exc.sqlstate is not None and exc.sqlstate.startswith("22")
    err = classified(exc)
    assert err.type == errors.INVALID_DATA and err.non_retryable
    assert err.message.startswith(f"invalid data: {expected} ({type(exc).__name__}, {exc.sqlstate})")
    if secret:
        assert secret in str(exc)
        assert_no_values(err, secret)


@pytest.mark.parametrize(("sql", "sqlstate", "named"), [
    ("SELECT * FROM no_such_table_x", "42P01", "no_such_table_x"),
    ("SELECT hashed_passwrd FROM users LIMIT 1", "42703", "hashed_passwrd"),
    ("SELECT no_such_function_x(1)", "42883", "no_such_function_x"),
    ("SELECT 'x'::no_such_type_x", "42704", "no_such_type_x"),
    ("SELECT no_such_schema_x.now()", "3F000", "no_such_schema_x"),
    ("INSERT INTO tenants (tenant, client_name, email) VALUES (gen_random_uuid(), 'x', 'y')"
     " ON CONFLICT (email) DO NOTHING", "42P10", "ON CONFLICT"),
])
async def test_schema_mismatches_name_the_object(db, sql, sqlstate, named) -> None:
    exc = await failure(db.execute(sql))
    assert exc.sqlstate == sqlstate
    err = classified(exc)
    assert err.type == errors.SCHEMA_MISMATCH and err.non_retryable
    assert named in err.message and sqlstate in err.message


# ---------------------------------------------------------------- retryable: the moment is wrong


async def test_statement_timeout_is_transient(db) -> None:
    await db.execute("SET statement_timeout = '50ms'")
    exc = await failure(db.execute("SELECT pg_sleep(10)"))
    assert exc.sqlstate == "57014"
    err = classified(exc)
    assert err.type == errors.TRANSIENT_DATABASE and not err.non_retryable
    assert "statement timeout" in err.message


async def test_lock_not_available_is_transient(db, other, table) -> None:
    async with db.transaction():
        await db.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE")
        exc = await failure(other.execute(f"SELECT * FROM {table} WHERE id = 1 FOR UPDATE NOWAIT"))
    assert exc.sqlstate == "55P03"
    err = classified(exc)
    assert err.type == errors.TRANSIENT_DATABASE and not err.non_retryable


async def test_serialization_failure_is_transient(db, other, table) -> None:
    with pytest.raises(psycopg.Error) as info:
        async with other.transaction():
            await other.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            await other.execute(f"SELECT * FROM {table}")  # takes the snapshot
            await db.execute(f"UPDATE {table} SET qty = 2 WHERE id = 1")  # commits after it
            await other.execute(f"UPDATE {table} SET qty = 3 WHERE id = 1")
    assert info.value.sqlstate == "40001"
    err = classified(info.value)
    assert err.type == errors.TRANSIENT_DATABASE and not err.non_retryable


async def test_deadlock_is_transient(db, other, table) -> None:
    for conn in (db, other):
        await conn.execute("SET deadlock_timeout = '50ms'")
        await conn.set_autocommit(False)
    try:
        await db.execute(f"UPDATE {table} SET qty = 5 WHERE id = 1")
        await other.execute(f"UPDATE {table} SET qty = 5 WHERE id = 2")
        results = await asyncio.gather(db.execute(f"UPDATE {table} SET qty = 6 WHERE id = 2"),
                                       other.execute(f"UPDATE {table} SET qty = 6 WHERE id = 1"),
                                       return_exceptions=True)
    finally:
        for conn in (db, other):
            await conn.rollback()
            await conn.set_autocommit(True)
    deadlocks = [r for r in results if isinstance(r, psycopg.Error)]
    assert len(deadlocks) == 1 and deadlocks[0].sqlstate == "40P01"
    err = classified(deadlocks[0])
    assert err.type == errors.TRANSIENT_DATABASE and not err.non_retryable


async def test_read_only_transaction_is_transient(db, table) -> None:
    """A failover can hand out a replica's backend for a moment (alga-psa PR #2415): retry."""
    async with db.transaction():
        await db.execute("SET TRANSACTION READ ONLY")
        exc = await failure(db.execute(f"UPDATE {table} SET qty = 2 WHERE id = 1"))
    assert exc.sqlstate == "25006"
    assert classified(exc).type == errors.TRANSIENT_DATABASE


async def test_terminated_connection_is_unavailable(db, stack) -> None:
    async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as victim:
        await db.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        exc = await failure(victim.execute("SELECT 1"))
    assert isinstance(exc, psycopg.OperationalError)
    err = classified(exc)
    assert err.type == errors.DATABASE_UNAVAILABLE and not err.non_retryable


async def test_connection_refused_is_unavailable_and_names_no_host() -> None:
    exc = await failure(psycopg.AsyncConnection.connect("postgresql://worker:pw-secret@127.0.0.1:1/x",
                                                        connect_timeout=5))
    assert exc.sqlstate is None
    err = classified(exc)
    assert err.type == errors.DATABASE_UNAVAILABLE and not err.non_retryable
    assert_no_values(err, "pw-secret", "127.0.0.1")


async def test_pool_timeout_is_unavailable(stack) -> None:
    async with AsyncConnectionPool(stack.database_url, min_size=1, max_size=1, open=False) as pool:
        await pool.open(wait=True)
        async with pool.connection():
            exc = await failure(pool.getconn(timeout=0.1))
    err = classified(exc)
    assert err.type == errors.DATABASE_UNAVAILABLE and not err.non_retryable


# ---------------------------------------------------------------- not ours: passed through


async def test_other_errors_pass_through(db) -> None:
    syntax = await failure(db.execute("SELEC 1"))
    assert syntax.sqlstate == "42601"
    assert classify(syntax) is None
    assert classify(ValueError("not a database error")) is None
    assert classify(ApplicationError("already typed", type=errors.DUPLICATE_ERROR)) is None
