-- 0004_audit_log.sql
--
-- Alga PSA's Enterprise Edition audit table, extension_audit_logs, in which the
-- worker records who triggered a user action (a resent welcome email, a
-- password reset, a deactivation ...), as the TypeScript worker did: one row in
-- the audit tenant (MASTER_BILLING_TENANT_ID, else MANAGEMENT_TENANT_ID) per
-- action, event_type 'tenant.<action>', details.targetTenantId naming the
-- tenant acted on. For development and tests only; Alga PSA owns the production
-- schema.
--
-- Columns, types, NOT NULLs, defaults, primary key and index as Alga's EE
-- migration defines them (knex: uuid, string(n) -> varchar(n), text, jsonb,
-- timestamp(useTz) -> timestamptz). Keyed (tenant, log_id), so it can be
-- distributed by tenant (Citus). IF NOT EXISTS: a database where Alga already
-- created it keeps its own.
--
-- Not part of the worker's schema contract (db/schema_contract.py) on purpose:
-- auditing is not essential to the work, a database without this table must
-- not stop the worker, and the workflows treat a failed audit write (then a
-- SchemaMismatchError) as non-fatal.

CREATE TABLE IF NOT EXISTS extension_audit_logs (
    tenant        uuid         NOT NULL,
    log_id        uuid         NOT NULL DEFAULT gen_random_uuid(),
    event_type    varchar(100) NOT NULL,
    user_id       uuid,
    user_email    varchar(255),
    resource_type varchar(50),
    resource_id   varchar(255),
    resource_name varchar(255),
    workflow_id   varchar(255),
    status        varchar(50),
    error_message text,
    details       jsonb,
    ip_address    varchar(45),
    user_agent    text,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT extension_audit_logs_pkey PRIMARY KEY (tenant, log_id)
);
CREATE INDEX IF NOT EXISTS extension_audit_logs_tenant_created_at_index
    ON extension_audit_logs (tenant, created_at DESC);
