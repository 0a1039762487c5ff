-- 0002_management_tenant.sql
--
-- Dev/test data: the "Nine Minds LLC" management tenant, in which the worker
-- records each new customer (a client, its admin contact, a tag, a client-portal
-- user). Creates the tenant and the roles the worker looks up there:
--   * client-portal Admin and User (msp = false, client = true), used for the
--     customer's portal user;
--   * MSP Admin (msp = true, client = false).
-- The e-mail is a dev placeholder (tenants.email is NOT NULL).
-- Fixed ids so that re-running is a no-op (ON CONFLICT DO NOTHING on the PKs).
-- Safe to apply any number of times.

INSERT INTO tenants (tenant, client_name, email, created_at, updated_at)
VALUES ('00000000-0000-4000-8000-000000000001', 'Nine Minds LLC', 'management-tenant@nineminds.invalid', now(), now())
ON CONFLICT (tenant) DO NOTHING;

INSERT INTO roles (tenant, role_id, role_name, description, msp, client)
VALUES
    ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000101',
     'Admin', 'Full system administrator access', true, false),
    ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000102',
     'Admin', 'Client portal administrator', false, true),
    ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000103',
     'User', 'Standard client portal user', false, true)
ON CONFLICT (tenant, role_id) DO NOTHING;
