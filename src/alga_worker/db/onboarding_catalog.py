"""Alga PSA onboarding seed data: roles, permissions, role grants and tax defaults.

Pure data, no I/O and no side effects at import, so the module can be passed
through the Temporal workflow sandbox.

It reproduces the data of Alga PSA's tenant onboarding seeds
(``ee/server/seeds/onboarding/01_roles.cjs`` … ``05_tax_rates.cjs`` in
``Nine-Minds/alga-psa``) as they stood at the reference snapshot of
2025-09-30 (``06dc5639``): 8 roles, 134 permissions (104 MSP, 30 client
portal) and 313 role-permission grants. The exact snapshot files were not
available; the data was taken from the nearest stored versions whose counts
match (see ``SOURCES``).

Matching rule, as in Alga's ``03_role_permissions.cjs``: a grant names a
permission by ``(resource, action)``; it is resolved against the permission with
the same ``msp``/``client`` flags as the role it is granted to (Alga keys
permissions ``resource:action:msp`` or ``resource:action:client``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_TAX_RATE",
    "DEFAULT_TAX_REGION",
    "MSP_ADMIN_ROLE",
    "PERMISSIONS",
    "ROLES",
    "ROLE_GRANTS",
    "SOURCES",
    "PermissionSeed",
    "RoleGrant",
    "RoleSeed",
    "grant_count",
]

SOURCES: Final[dict[str, str]] = {
    "roles": "ee/server/seeds/onboarding/psa/01_roles.cjs@1d37a6c76b981dc1196118d5fa67c3fbb126b0a8 "
    "(same 8 roles as the 2025 01_roles.cjs, which is not stored)",
    "permissions": "ee/server/seeds/onboarding/02_permissions.cjs@59f2ad79af3aa973315b5f660f0c12cb62a832a3",
    "role_permissions": "ee/server/seeds/onboarding/03_role_permissions.cjs"
    "@00c138ea6f9ed73882f3580a064bab5aa5f18539",
    "tax_regions": "ee/server/seeds/onboarding/04_tax_regions.cjs@59f2ad79af3aa973315b5f660f0c12cb62a832a3",
    "tax_rates": "ee/server/seeds/onboarding/05_tax_rates.cjs@503d54aa497c9e1be193247487514337f9617e5d",
}
"""Where each part of the data was read (repository ``Nine-Minds/alga-psa``)."""


@dataclass(frozen=True)
class RoleSeed:
    """A role row: ``roles(role_name, description, msp, client)``."""

    name: str
    description: str
    msp: bool
    client: bool


@dataclass(frozen=True)
class PermissionSeed:
    """A permission row: ``permissions(resource, action, msp, client, description)``."""

    resource: str
    action: str
    msp: bool
    client: bool
    description: str


@dataclass(frozen=True)
class RoleGrant:
    """The permissions granted to one role.

    ``permissions`` holds ``(resource, action)`` pairs, matched against the
    permissions that have the same ``msp``/``client`` flags as ``role``.
    """

    role: RoleSeed
    permissions: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------- roles

MSP_ADMIN_ROLE: Final = RoleSeed("Admin", "Full system administrator access", msp=True, client=False)
"""The MSP ``Admin`` role; it is granted every MSP permission."""

_MSP_FINANCE: Final = RoleSeed(
    "Finance", "Financial operations and billing management", msp=True, client=False
)
_MSP_TECHNICIAN: Final = RoleSeed(
    "Technician", "Technical support and service delivery", msp=True, client=False
)
_MSP_PROJECT_MANAGER: Final = RoleSeed(
    "Project Manager", "Project oversight and team coordination", msp=True, client=False
)
_MSP_DISPATCHER: Final = RoleSeed("Dispatcher", "Scheduling and dispatch operations", msp=True, client=False)
_CLIENT_ADMIN: Final = RoleSeed("Admin", "Client portal administrator", msp=False, client=True)
_CLIENT_FINANCE: Final = RoleSeed(
    "Finance", "Client billing and financial visibility", msp=False, client=True
)
_CLIENT_USER: Final = RoleSeed("User", "Standard client portal user", msp=False, client=True)

ROLES: Final[tuple[RoleSeed, ...]] = (
    MSP_ADMIN_ROLE,
    _MSP_FINANCE,
    _MSP_TECHNICIAN,
    _MSP_PROJECT_MANAGER,
    _MSP_DISPATCHER,
    _CLIENT_ADMIN,
    _CLIENT_FINANCE,
    _CLIENT_USER,
)
"""The 8 onboarding roles (5 MSP, 3 client portal), keyed in Alga by name + msp + client."""

# --------------------------------------------------------------------------- permissions

_CRUD: Final = ("create", "read", "update", "delete")
_CRUD_VERB: Final = {"create": "Create", "read": "View", "update": "Update", "delete": "Delete"}

# MSP permissions: resource -> (plural noun used in "Create/View/Update/Delete <noun>",
#                               extra (action, description) pairs, description overrides).
_MSP_RESOURCES: Final[tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]] = (
    ("asset", "assets", ()),
    ("billing", "billing records", ()),
    ("client", "clients", ()),
    ("contact", "contacts", ()),
    ("credit", "credits", (("transfer", "Transfer credits"), ("reconcile", "Reconcile credits"))),
    ("document", "documents", ()),
    (
        "invoice",
        "invoices",
        (
            ("generate", "Generate invoices"),
            ("finalize", "Finalize invoices"),
            ("send", "Send invoices"),
            ("void", "Void invoices"),
        ),
    ),
    ("profile", "profiles", ()),
    ("project", "projects", ()),
    ("project_task", "project tasks", ()),
    ("tag", "tags", ()),
    ("technician_dispatch", "dispatch entries", ()),
    ("ticket", "tickets", ()),
    ("timeentry", "time entries", ()),
    (
        "timesheet",
        "timesheets",
        (
            ("read_all", "View all timesheets"),
            ("submit", "Submit timesheets"),
            ("approve", "Approve timesheets"),
            ("reverse", "Reverse timesheet approvals"),
        ),
    ),
    ("user", "users", (("invite", "Invite users"), ("reset_password", "Reset user passwords"))),
    ("user_schedule", "user schedules", ()),
    ("ticket_settings", "ticket settings", ()),
    ("user_settings", "user settings", ()),
    ("system_settings", "system settings", ()),
    ("security_settings", "security settings", ()),
    ("timeentry_settings", "time entry settings", ()),
    ("billing_settings", "billing settings", ()),
)
_MSP_DESCRIPTION_OVERRIDES: Final[dict[tuple[str, str], str]] = {
    ("billing", "read"): "View billing information",
}

# Client-portal permissions: resource -> (action, description) in Alga's order.
_CLIENT_RESOURCES: Final[tuple[tuple[str, tuple[tuple[str, str], ...]], ...]] = (
    (
        "billing",
        (
            ("read", "View billing information in client portal"),
            ("create", "Create billing entries in client portal"),
            ("update", "Update billing entries in client portal"),
        ),
    ),
    (
        "client",
        (
            ("read", "View client information"),
            ("create", "Create client information"),
            ("update", "Update client information"),
            ("delete", "Delete client information"),
        ),
    ),
    (
        "project",
        (
            ("read", "View projects in client portal"),
            ("create", "Create projects in client portal"),
            ("update", "Update projects in client portal"),
            ("delete", "Delete projects in client portal"),
        ),
    ),
    (
        "ticket",
        (
            ("read", "View tickets in client portal"),
            ("create", "Create tickets in client portal"),
            ("update", "Update tickets in client portal"),
        ),
    ),
    (
        "time_management",
        (
            ("read", "View time management in client portal"),
            ("create", "Create time entries in client portal"),
            ("update", "Update time entries in client portal"),
            ("delete", "Delete time entries in client portal"),
        ),
    ),
    (
        "user",
        (
            ("read", "View users in client portal"),
            ("create", "Create users in client portal"),
            ("update", "Update users in client portal"),
            ("delete", "Delete users in client portal"),
            ("reset_password", "Reset passwords in client portal"),
        ),
    ),
    (
        "settings",
        (
            ("read", "View settings in client portal"),
            ("create", "Create settings in client portal"),
            ("update", "Update settings in client portal"),
            ("delete", "Delete settings in client portal"),
        ),
    ),
    (
        "documents",
        (
            ("read", "View documents in client portal"),
            ("create", "Create documents in client portal"),
            ("update", "Update documents in client portal"),
        ),
    ),
)


def _build_permissions() -> tuple[PermissionSeed, ...]:
    """Expand the compact tables above into permission rows (MSP first, then client)."""
    rows: list[PermissionSeed] = []
    for resource, noun, extras in _MSP_RESOURCES:
        for action in _CRUD:
            default = f"{_CRUD_VERB[action]} {noun}"
            description = _MSP_DESCRIPTION_OVERRIDES.get((resource, action), default)
            rows.append(PermissionSeed(resource, action, msp=True, client=False, description=description))
        for action, description in extras:
            rows.append(PermissionSeed(resource, action, msp=True, client=False, description=description))
    for resource, actions in _CLIENT_RESOURCES:
        for action, description in actions:
            rows.append(PermissionSeed(resource, action, msp=False, client=True, description=description))
    return tuple(rows)


PERMISSIONS: Final[tuple[PermissionSeed, ...]] = _build_permissions()
"""The 134 onboarding permissions.

104 MSP (``msp=True, client=False``) and 30 client portal (``msp=False, client=True``).
"""

# --------------------------------------------------------------------------- role grants


def _pairs(*specs: str) -> tuple[tuple[str, str], ...]:
    """Turn ``"resource: action action …"`` specs into ``(resource, action)`` pairs, in order."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        resource, _, actions = spec.partition(":")
        out.extend((resource.strip(), action) for action in actions.split())
    return tuple(out)


_MSP_FINANCE_GRANTS: Final = _pairs(
    "asset: read",
    "billing: create read update delete",
    "client: create read update delete",
    "contact: create read update delete",
    "credit: create read update delete transfer reconcile",
    "document: create read update delete",
    "invoice: create read update delete generate finalize send void",
    "profile: create read update",
    "project: read update",
    "project_task: read update",
    "tag: create read",
    "technician_dispatch: read",
    "ticket: read update",
    "timeentry: create read update delete",
    "timesheet: read read_all submit",
    "user: read",
    "user_schedule: read",
    "billing_settings: create read update delete",
)
_MSP_TECHNICIAN_GRANTS: Final = _pairs(
    "asset: create read update",
    "client: read delete",
    "contact: read delete",
    "document: create read update",
    "profile: read update",
    "project: read",
    "project_task: create read update",
    "tag: create read update",
    "technician_dispatch: read",
    "ticket: create read update",
    "timeentry: create read update",
    "timesheet: read update read_all submit",
    "user_schedule: read",
    "ticket_settings: read",
)
_MSP_PROJECT_MANAGER_GRANTS: Final = _pairs(
    "asset: read",
    "billing: read",
    "client: create read update",
    "contact: create read update",
    "document: create read update",
    "invoice: read",
    "profile: read update",
    "project: create read update delete",
    "project_task: create read update delete",
    "tag: create read update",
    "technician_dispatch: read",
    "ticket: create read update",
    "timeentry: create read update",
    "timesheet: read update read_all submit approve reverse",
    "user: read invite",
    "user_schedule: read",
    "user_settings: read",
    "billing_settings: read",
)
_MSP_DISPATCHER_GRANTS: Final = _pairs(
    "asset: read",
    "client: read",
    "contact: read",
    "document: read",
    "profile: read",
    "project: read",
    "project_task: read",
    "tag: create read update",
    "technician_dispatch: create read update",
    "ticket: create read update",
    "timeentry: read",
    "timesheet: read",
    "user: read",
    "user_schedule: create read update",
    "user_settings: read",
)
_CLIENT_ADMIN_GRANTS: Final = _pairs(
    "billing: create read update",
    "client: create read update delete",
    "project: create read update delete",
    "ticket: create read update",
    "time_management: create read update delete",
    "user: create read update delete reset_password",
    "settings: create read update delete",
    "documents: create read update",
)
_CLIENT_FINANCE_GRANTS: Final = _pairs(
    "billing: read",
    "client: create read update",
    "project: read",
    "ticket: create read update",
    "time_management: read",
    "user: read",
    "settings: read",
    "documents: create read update",
)
_CLIENT_USER_GRANTS: Final = _pairs(
    "client: create read update",
    "project: read",
    "ticket: create read update",
    "time_management: read",
    "documents: create read update",
)

ROLE_GRANTS: Final[tuple[RoleGrant, ...]] = (
    RoleGrant(MSP_ADMIN_ROLE, tuple((p.resource, p.action) for p in PERMISSIONS if p.msp)),
    RoleGrant(_MSP_FINANCE, _MSP_FINANCE_GRANTS),
    RoleGrant(_MSP_TECHNICIAN, _MSP_TECHNICIAN_GRANTS),
    RoleGrant(_MSP_PROJECT_MANAGER, _MSP_PROJECT_MANAGER_GRANTS),
    RoleGrant(_MSP_DISPATCHER, _MSP_DISPATCHER_GRANTS),
    RoleGrant(_CLIENT_ADMIN, _CLIENT_ADMIN_GRANTS),
    RoleGrant(_CLIENT_FINANCE, _CLIENT_FINANCE_GRANTS),
    RoleGrant(_CLIENT_USER, _CLIENT_USER_GRANTS),
)
"""Per-role grants; 313 pairs in all (104 + 56 + 32 + 43 + 23 + 30 + 14 + 11)."""


def grant_count() -> int:
    """Return the number of ``role_permissions`` rows the grants produce for one tenant (313)."""
    return sum(len(grant.permissions) for grant in ROLE_GRANTS)


# --------------------------------------------------------------------------- tax defaults

DEFAULT_TAX_REGION: Final[dict[str, str]] = {"region_code": "DEFAULT", "region_name": "Default Tax Region"}
"""``04_tax_regions.cjs``: inserted with ``is_active = true`` if ``(tenant, 'DEFAULT')`` is missing."""

DEFAULT_TAX_RATE: Final[dict[str, object]] = {
    "tax_percentage": 0,
    "description": "Non-taxable",
    "region_code": "DEFAULT",
}
"""``05_tax_rates.cjs``: inserted with a new ``tax_rate_id``, ``start_date = now()`` and
``is_active = true`` if the tenant has no rate with this description and percentage."""
