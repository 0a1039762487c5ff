-- 0003_stripe.sql
--
-- Alga PSA's Stripe billing tables the worker writes at checkout (S-DEC
-- behaviour, reference 2.1 and 3.11): stripe_customers and stripe_subscriptions
-- for the new tenant, and the stripe_prices (with their stripe_products) that
-- the master billing tenant (MASTER_BILLING_TENANT_ID) keeps for Alga's plans.
-- For development and tests only; Alga PSA owns the production schema.
--
-- Source: Nine-Minds/alga-psa ee/server/migrations/
-- 20251014120000_create_stripe_integration_tables.cjs (the version whose
-- columns Alga's StripeService and the S-DEC worker read and write:
-- stripe_subscription_item_id, cancel_at, recurring_interval). Names, types,
-- NOT NULLs, defaults, primary and unique keys as there: every table is keyed
-- (tenant, <uuid id>) and unique on (tenant, <Stripe's external id>), so each
-- can be distributed by "tenant" (Citus). knex "timestamp(useTz)" columns are
-- timestamptz, "text" text, "uuid" uuid, "jsonb" jsonb, "integer" integer.
-- stripe_accounts and stripe_webhook_events are left out: the worker never
-- touches them.
--
-- One deliberate difference, for the cross-tenant price reference: Alga's
-- worker (tenant-operations.ts, S-DEC and 2026) inserts into the NEW tenant's
-- stripe_subscriptions the stripe_price_id of a row of the MASTER billing
-- tenant's stripe_prices. The Oct-2025 migration declares that foreign key as
-- (tenant, stripe_price_id) -> stripe_prices (tenant, stripe_price_id), which
-- such a row can never satisfy (the price lives in another tenant). Alga's own
-- later shapes point the other way: the same file's idempotent rewrite makes
-- stripe_prices.stripe_price_id unique by itself, and
-- 20260309100000_add_fk_stripe_base_price_id.cjs references it alone (from
-- stripe_base_price_id). That single-column reference is used here for
-- stripe_price_id too, so the row Alga's worker writes can be written.
--
-- Idempotent: every statement is IF NOT EXISTS, so applying it to a database
-- that already has Alga's tables (a shared dev database) changes nothing.
-- Seeds nothing.

-- ---------------------------------------------------------------------------
-- stripe_customers: which Stripe customer (cus_...) pays for a tenant.
-- billing_tenant = the tenant whose Stripe account bills it (the master
-- billing tenant); no foreign key in Alga ("Phase 2").
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS stripe_customers (
    tenant                      uuid        NOT NULL,
    stripe_customer_id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    stripe_customer_external_id text        NOT NULL,
    billing_tenant              uuid,
    email                       text        NOT NULL,
    name                        text,
    metadata                    jsonb,
    created_at                  timestamptz DEFAULT now(),
    updated_at                  timestamptz DEFAULT now(),
    CONSTRAINT stripe_customers_pkey PRIMARY KEY (tenant, stripe_customer_id),
    CONSTRAINT stripe_customers_tenant_stripe_customer_external_id_unique
        UNIQUE (tenant, stripe_customer_external_id),
    CONSTRAINT stripe_customers_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);

CREATE INDEX IF NOT EXISTS idx_stripe_customers_email ON stripe_customers (email);

-- ---------------------------------------------------------------------------
-- stripe_products: the product catalogue (prod_...); product_type is
-- 'license', 'service' or 'addon' (not constrained in Alga).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS stripe_products (
    tenant                     uuid        NOT NULL,
    stripe_product_id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    stripe_product_external_id text        NOT NULL,
    billing_tenant             uuid,
    name                       text        NOT NULL,
    description                text,
    product_type               text        NOT NULL,
    is_active                  boolean     DEFAULT true,
    metadata                   jsonb,
    created_at                 timestamptz DEFAULT now(),
    updated_at                 timestamptz DEFAULT now(),
    CONSTRAINT stripe_products_pkey PRIMARY KEY (tenant, stripe_product_id),
    CONSTRAINT stripe_products_tenant_stripe_product_external_id_unique
        UNIQUE (tenant, stripe_product_external_id),
    CONSTRAINT stripe_products_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);

-- ---------------------------------------------------------------------------
-- stripe_prices: the prices (price_...) of those products. unit_amount in the
-- currency's minor unit; recurring_interval 'month', 'year' or NULL.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS stripe_prices (
    tenant                   uuid        NOT NULL,
    stripe_price_id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    stripe_price_external_id text        NOT NULL,
    stripe_product_id        uuid        NOT NULL,
    unit_amount              integer     NOT NULL,
    currency                 text        DEFAULT 'usd',
    recurring_interval       text,
    recurring_interval_count integer     DEFAULT 1,
    is_active                boolean     DEFAULT true,
    metadata                 jsonb,
    created_at               timestamptz DEFAULT now(),
    updated_at               timestamptz DEFAULT now(),
    CONSTRAINT stripe_prices_pkey PRIMARY KEY (tenant, stripe_price_id),
    CONSTRAINT stripe_prices_tenant_stripe_price_external_id_unique
        UNIQUE (tenant, stripe_price_external_id),
    -- Alga's later shape (see the header): what a cross-tenant reference needs.
    CONSTRAINT stripe_prices_stripe_price_id_unique UNIQUE (stripe_price_id),
    CONSTRAINT stripe_prices_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT stripe_prices_tenant_stripe_product_id_foreign FOREIGN KEY (tenant, stripe_product_id)
        REFERENCES stripe_products (tenant, stripe_product_id)
);

-- ---------------------------------------------------------------------------
-- stripe_subscriptions: a tenant's subscription (sub_...) with its seat
-- quantity (mirrors tenants.licensed_user_count). stripe_customer_id is the
-- tenant's own stripe_customers row; stripe_price_id a price of the master
-- billing tenant (see the header).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS stripe_subscriptions (
    tenant                          uuid        NOT NULL,
    stripe_subscription_id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    stripe_subscription_external_id text        NOT NULL,
    stripe_subscription_item_id     text,
    stripe_customer_id              uuid        NOT NULL,
    stripe_price_id                 uuid        NOT NULL,
    status                          text        NOT NULL,
    quantity                        integer     DEFAULT 1,
    current_period_start            timestamptz,
    current_period_end              timestamptz,
    cancel_at                       timestamptz,
    canceled_at                     timestamptz,
    metadata                        jsonb,
    created_at                      timestamptz DEFAULT now(),
    updated_at                      timestamptz DEFAULT now(),
    CONSTRAINT stripe_subscriptions_pkey PRIMARY KEY (tenant, stripe_subscription_id),
    CONSTRAINT stripe_subscriptions_tenant_stripe_subscription_external_id_unique
        UNIQUE (tenant, stripe_subscription_external_id),
    CONSTRAINT stripe_subscriptions_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT stripe_subscriptions_tenant_stripe_customer_id_foreign FOREIGN KEY (tenant, stripe_customer_id)
        REFERENCES stripe_customers (tenant, stripe_customer_id),
    CONSTRAINT stripe_subscriptions_stripe_price_id_foreign FOREIGN KEY (stripe_price_id)
        REFERENCES stripe_prices (stripe_price_id)
);

CREATE INDEX IF NOT EXISTS idx_stripe_subscriptions_status ON stripe_subscriptions (tenant, status);
