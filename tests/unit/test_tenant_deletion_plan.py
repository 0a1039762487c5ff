"""The deletion order (``db/tenant_deletion.deletion_plan``): children first from the foreign keys,
cycles broken at their nullable keys, an unbreakable cycle refused, the final pair left to the end."""

from __future__ import annotations

import pytest

from alga_worker.db.tenant_deletion import ForeignKey, Table, UnorderableTables, deletion_plan


def tables(*names: str) -> list[Table]:
    return [Table(n, ("tenant", "id")) for n in names]


def fk(child: str, parent: str, *, nullable: bool = False, name: str | None = None) -> ForeignKey:
    return ForeignKey(name or f"{child}_{parent}_fk", child, parent, ("tenant", f"{parent}_id"), nullable)


def test_children_come_before_their_parents_and_the_final_pair_is_left_out() -> None:
    plan = deletion_plan(tables("tenants", "clients", "contacts", "users", "user_roles", "roles",
                                "pending_tenant_deletions"),
                         [fk("clients", "tenants"), fk("contacts", "clients"), fk("users", "tenants"),
                          fk("user_roles", "users"), fk("user_roles", "roles"), fk("roles", "tenants"),
                          fk("pending_tenant_deletions", "tenants")])
    order = list(plan.order)
    assert "tenants" not in order and "pending_tenant_deletions" not in order
    for child, parent in [("contacts", "clients"), ("user_roles", "users"), ("user_roles", "roles")]:
        assert order.index(child) < order.index(parent)
    assert plan.broken == ()


def test_a_cycle_is_broken_at_its_nullable_keys() -> None:
    # Alga's: clients.account_manager_id -> users, users.contact_id -> contacts, contacts.client_id -> clients.
    keys = [fk("clients", "users", nullable=True), fk("users", "contacts", nullable=True),
            fk("contacts", "clients", nullable=True), fk("users", "tenants"), fk("clients", "tenants")]
    plan = deletion_plan(tables("tenants", "clients", "users", "contacts"), keys)
    assert {k.name for k in plan.broken} == {"clients_users_fk", "users_contacts_fk", "contacts_clients_fk"}
    assert sorted(plan.order) == ["clients", "contacts", "users"]


def test_a_self_reference_is_broken_when_nullable_and_refused_when_not() -> None:
    plan = deletion_plan(tables("tenants", "tickets"), [fk("tickets", "tickets", nullable=True)])
    assert [k.name for k in plan.broken] == ["tickets_tickets_fk"]
    with pytest.raises(UnorderableTables) as refused:
        deletion_plan(tables("tenants", "tickets"), [fk("tickets", "tickets")])
    assert refused.value.tables == ["tickets"]


def test_a_cycle_of_not_null_keys_is_refused_naming_its_tables() -> None:
    with pytest.raises(UnorderableTables) as refused:
        deletion_plan(tables("tenants", "a", "b"), [fk("a", "b"), fk("b", "a")])
    assert set(refused.value.tables) == {"a", "b"}
