-- 0005_tenant_suspension.sql
--
-- Alga PSA's tenant-wide suspension flag: tenants.suspended_at and
-- tenants.suspended_reason, as Alga's CE migration
-- server/migrations/20260724120000_add_suspension_to_tenants.cjs (July 2026)
-- adds them. Alga reads a tenant as suspended iff suspended_at IS NOT NULL:
-- its job dispatch, fan-outs, RMM and calendar webhooks, workflow event worker,
-- API-key validation, public endpoints and tenant-scoped outbound email skip
-- such a tenant (packages/db/src/lib/tenantSuspension.ts, isTenantSuspended).
-- suspended_reason is a code, not free text: the check below allows only
-- 'tenant_cancelled' (Alga's only value so far); who suspended and why, in
-- words, is recorded in extension_audit_logs by the worker.
--
-- For development and tests only; Alga PSA owns the production schema. Not in
-- the worker's schema contract: a database of an Alga version before the
-- migration still provisions tenants; the suspension activities check for the
-- columns themselves and fail with SchemaMismatchError naming the missing one.
-- IF NOT EXISTS / a guarded constraint: a database where Alga already added
-- them keeps its own.

ALTER TABLE tenants ADD COLUMN IF NOT EXISTS suspended_at timestamptz;
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS suspended_reason text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'tenants_suspended_reason_check'
                     AND conrelid = 'tenants'::regclass) THEN
        ALTER TABLE tenants ADD CONSTRAINT tenants_suspended_reason_check CHECK (
            (suspended_at IS NULL AND suspended_reason IS NULL)
            OR (suspended_at IS NOT NULL AND suspended_reason IN ('tenant_cancelled'))
        );
    END IF;
END
$$;
