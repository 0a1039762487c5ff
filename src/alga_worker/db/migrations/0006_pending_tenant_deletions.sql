-- 0006_pending_tenant_deletions.sql
--
-- Alga PSA's record of a tenant deletion in progress, as Alga's EE migration
-- creating pending_tenant_deletions (ee/server/migrations, the table the
-- original tenantDeletionWorkflow writes through recordPendingDeletion /
-- updateDeletionStatus) defines it, plus last_winback_email_at (Alga's June 2026
-- win-back migration). One row per deletion run: deletion_id is the run's
-- deletionId; status follows the workflow ('pending', 'awaiting_confirmation',
-- 'confirmed', 'deleting', 'deleted', 'rolled_back', 'failed');
-- stats_snapshot holds the statistics collected before the wait.
--
-- The row has a tenant column (a foreign key to tenants), so the batched
-- deletion removes it with the rest of the tenant; the final outcome is then
-- recorded in extension_audit_logs (tenant.deleted) in the audit tenant.
--
-- For development and tests only; Alga PSA (EE) owns the production schema.
-- Not in the worker's schema contract: only tenantDeletionWorkflow needs it,
-- and it refuses with SchemaMismatchError when the table is missing.
-- IF NOT EXISTS: a database where Alga already created it keeps its own.

CREATE TABLE IF NOT EXISTS pending_tenant_deletions (
    deletion_id uuid NOT NULL,
    tenant uuid NOT NULL,
    trigger_source text NOT NULL,
    triggered_by uuid,
    subscription_external_id text,
    canceled_at timestamptz NOT NULL,
    scheduled_deletion_date timestamptz NOT NULL,
    workflow_id text NOT NULL,
    workflow_run_id text,
    status varchar(50) NOT NULL DEFAULT 'pending',
    stats_snapshot jsonb NOT NULL,
    confirmation_type text,
    confirmed_by uuid,
    confirmed_at timestamptz,
    deletion_scheduled_for timestamptz,
    deleted_at timestamptz,
    rollback_reason text,
    rolled_back_by uuid,
    rolled_back_at timestamptz,
    error text,
    last_winback_email_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pending_tenant_deletions_pkey PRIMARY KEY (deletion_id),
    CONSTRAINT pending_tenant_deletions_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT pending_tenant_deletions_tenant_unique UNIQUE (tenant)
);

CREATE INDEX IF NOT EXISTS pending_tenant_deletions_status_index ON pending_tenant_deletions (status);
CREATE INDEX IF NOT EXISTS pending_tenant_deletions_scheduled_deletion_date_index
    ON pending_tenant_deletions (scheduled_deletion_date);
CREATE INDEX IF NOT EXISTS pending_tenant_deletions_workflow_id_index ON pending_tenant_deletions (workflow_id);
