"""The onboarding catalog reproduces Alga PSA's onboarding seed data."""

from __future__ import annotations

from collections import Counter

from alga_worker.db import onboarding_catalog as cat


def _key(resource: str, action: str, msp: bool, client: bool) -> tuple[str, str, bool, bool]:
    return (resource, action, msp, client)


def test_counts() -> None:
    assert len(cat.ROLES) == 8
    assert len(cat.PERMISSIONS) == 134
    assert sum(1 for p in cat.PERMISSIONS if p.msp and not p.client) == 104
    assert sum(1 for p in cat.PERMISSIONS if p.client and not p.msp) == 30
    assert cat.grant_count() == 313
    assert sum(len(g.permissions) for g in cat.ROLE_GRANTS) == 313


def test_roles_are_unique_and_each_has_one_grant_list() -> None:
    role_keys = [(r.name, r.msp, r.client) for r in cat.ROLES]
    assert len(set(role_keys)) == 8
    assert Counter(r.msp for r in cat.ROLES) == {True: 5, False: 3}
    assert [g.role for g in cat.ROLE_GRANTS] == list(cat.ROLES)


def test_no_duplicate_permissions() -> None:
    keys = [_key(p.resource, p.action, p.msp, p.client) for p in cat.PERMISSIONS]
    assert len(keys) == len(set(keys))
    assert all(p.msp != p.client for p in cat.PERMISSIONS)
    assert all(p.description for p in cat.PERMISSIONS)


def test_every_grant_names_an_existing_permission_with_matching_flags() -> None:
    existing = {_key(p.resource, p.action, p.msp, p.client) for p in cat.PERMISSIONS}
    for grant in cat.ROLE_GRANTS:
        assert len(grant.permissions) == len(set(grant.permissions)), grant.role
        for resource, action in grant.permissions:
            assert _key(resource, action, grant.role.msp, grant.role.client) in existing, (
                grant.role,
                resource,
                action,
            )


def test_msp_admin_gets_every_msp_permission() -> None:
    role = cat.MSP_ADMIN_ROLE
    assert (role.name, role.msp, role.client) == ("Admin", True, False)
    admin = next(g for g in cat.ROLE_GRANTS if g.role == cat.MSP_ADMIN_ROLE)
    msp = {(p.resource, p.action) for p in cat.PERMISSIONS if p.msp}
    assert set(admin.permissions) == msp
    assert len(admin.permissions) == 104


def test_per_role_grant_counts() -> None:
    counts = {(g.role.name, g.role.msp): len(g.permissions) for g in cat.ROLE_GRANTS}
    assert counts == {
        ("Admin", True): 104,
        ("Finance", True): 56,
        ("Technician", True): 32,
        ("Project Manager", True): 43,
        ("Dispatcher", True): 23,
        ("Admin", False): 30,
        ("Finance", False): 14,
        ("User", False): 11,
    }


def test_tax_defaults() -> None:
    assert cat.DEFAULT_TAX_REGION == {"region_code": "DEFAULT", "region_name": "Default Tax Region"}
    assert cat.DEFAULT_TAX_RATE == {
        "tax_percentage": 0,
        "description": "Non-taxable",
        "region_code": "DEFAULT",
    }
    assert cat.DEFAULT_TAX_RATE["region_code"] == cat.DEFAULT_TAX_REGION["region_code"]


def test_frozen() -> None:
    role = cat.ROLES[0]
    try:
        role.name = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("RoleSeed must be frozen")
