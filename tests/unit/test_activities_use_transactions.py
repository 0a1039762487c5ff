"""Every activity's database work runs inside ``conn.transaction()``.

Why: the worker's statement, lock and idle-in-transaction timeouts are set transaction-locally when a
transaction opens (``db/pool.py``, safe behind PgBouncer in transaction mode); a statement run on a pool
connection outside one would run without any timeout. This reads the activity modules' source: each
``self._pool.connection()`` must open a transaction in the same ``async with``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import alga_worker.activities

ACTIVITIES = Path(alga_worker.activities.__file__).parent


def _with_items(tree: ast.AST) -> list[tuple[str, int, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncWith):
            items = [ast.unparse(item.context_expr) for item in node.items]
            found.append((ast.unparse(node.items[0].context_expr), node.lineno, items))
    return found


def test_every_pool_connection_opens_a_transaction() -> None:
    checked = 0
    for path in sorted(ACTIVITIES.glob("*.py")):
        for _, line, items in _with_items(ast.parse(path.read_text(encoding="utf-8"))):
            if not any(item.endswith("_pool.connection()") for item in items):
                continue
            checked += 1
            assert "conn.transaction()" in items, f"{path.name}:{line}: pool connection without a transaction"
    assert checked >= 10, "the activities were not found"
