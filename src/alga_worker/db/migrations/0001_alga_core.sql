-- 0001_alga_core.sql
--
-- The subset of the Alga PSA schema that alga-temporal-worker reads and writes,
-- for development and tests only. Alga PSA owns the production schema (its
-- knex migrations in Nine-Minds/alga-psa server/migrations); this file mirrors
-- the current table and column names, types, NOT NULLs, defaults, primary keys,
-- unique constraints and foreign keys of those tables, trimmed to the columns
-- the worker needs. Columns left out are nullable or have defaults in Alga.
--
-- Conventions, as in Alga: almost every table is keyed (tenant, <id>) so it can
-- be distributed by "tenant" (Citus); foreign keys between tenant tables carry
-- the tenant column. Where Alga's migrations create a Citus and a non-Citus
-- variant of a foreign key, the Citus (tenant-composite) variant is used here.
-- knex "timestamp" columns are timestamptz; knex "string" columns are
-- varchar(255); knex "enum" columns are text with a CHECK constraint.
--
-- Runs in one transaction on PostgreSQL 15-18, needs no extension
-- (gen_random_uuid() is built in since PostgreSQL 13). Apply once.

-- ---------------------------------------------------------------------------
-- tenants (reference table in Citus). company_name was renamed client_name in
-- the 2025-10 companies -> clients migration.
-- ---------------------------------------------------------------------------
CREATE TABLE tenants (
    tenant              uuid         NOT NULL DEFAULT gen_random_uuid(),
    client_name         text         NOT NULL,
    phone_number        text,
    email               text         NOT NULL,
    industry            text,
    created_at          timestamptz,                      -- no default in Alga: writers set it
    updated_at          timestamptz  DEFAULT now(),
    payment_platform_id text,
    payment_method_id   text,
    auth_service_id     text,
    plan                text,
    licensed_user_count integer,
    last_license_update timestamptz,
    stripe_event_id     varchar(255),
    billing_source      text         NOT NULL DEFAULT 'stripe',
    CONSTRAINT tenants_pkey PRIMARY KEY (tenant)
);
CREATE INDEX idx_tenants_tenant_stripe_event ON tenants (tenant, stripe_event_id);

-- ---------------------------------------------------------------------------
-- clients (formerly companies)
-- ---------------------------------------------------------------------------
CREATE TABLE clients (
    tenant                    uuid         NOT NULL,
    client_id                 uuid         NOT NULL DEFAULT gen_random_uuid(),
    client_name               text         NOT NULL,
    url                       text,
    properties                jsonb,
    billing_type              text,
    payment_terms             text,
    credit_limit              bigint,
    preferred_payment_method  text,
    auto_invoice              boolean      DEFAULT false,
    invoice_delivery_method   text,
    created_at                timestamptz  DEFAULT now(),
    updated_at                timestamptz  DEFAULT now(),
    is_inactive               boolean      DEFAULT false,
    client_type               text,
    is_tax_exempt             boolean      NOT NULL DEFAULT false,
    tax_exemption_certificate varchar(255),
    tax_id_number             varchar(255),
    notes                     text,
    credit_balance            integer,
    billing_cycle             text         NOT NULL DEFAULT 'monthly',
    timezone                  varchar(255),
    notes_document_id         uuid,
    invoice_template_id       uuid,
    billing_contact_id        uuid,
    billing_email             varchar(255),
    region_code               varchar(255),
    account_manager_id        uuid,
    CONSTRAINT clients_pkey PRIMARY KEY (tenant, client_id),
    CONSTRAINT clients_client_id_unique UNIQUE (client_id),
    CONSTRAINT clients_tenant_client_name_unique UNIQUE (tenant, client_name),
    CONSTRAINT clients_billing_cycle_check CHECK (billing_cycle = ANY (ARRAY[
        'weekly', 'bi-weekly', 'monthly', 'quarterly', 'semi-annually', 'annually'])),
    CONSTRAINT clients_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);
CREATE INDEX idx_clients_tenant_inactive_name ON clients (tenant, is_inactive, client_name);
CREATE INDEX idx_clients_tenant_client_type ON clients (tenant, client_type);

-- ---------------------------------------------------------------------------
-- client_locations (formerly company_locations). location_id has no default:
-- writers pass gen_random_uuid(). PK column order is Alga's (location_id, tenant).
-- ---------------------------------------------------------------------------
CREATE TABLE client_locations (
    location_id         uuid         NOT NULL,
    tenant              uuid         NOT NULL,
    client_id           uuid         NOT NULL,
    location_name       varchar(255),
    address_line1       varchar(255) NOT NULL,
    address_line2       varchar(255),
    address_line3       varchar(255),
    city                varchar(255) NOT NULL,
    state_province      varchar(255),
    postal_code         varchar(255),
    country_code        varchar(255) NOT NULL,
    country_name        varchar(255) NOT NULL,
    region_code         varchar(255),
    is_billing_address  boolean      DEFAULT false,
    is_shipping_address boolean      DEFAULT false,
    is_default          boolean      DEFAULT false,
    phone               varchar(255),
    fax                 varchar(255),
    email               varchar(255),
    notes               text,
    is_active           boolean      DEFAULT true,
    created_at          timestamptz  DEFAULT now(),
    updated_at          timestamptz  DEFAULT now(),
    CONSTRAINT client_locations_pkey PRIMARY KEY (location_id, tenant),
    CONSTRAINT client_locations_client_id_tenant_foreign FOREIGN KEY (tenant, client_id)
        REFERENCES clients (tenant, client_id) ON DELETE CASCADE
);
CREATE INDEX idx_client_locations_tenant_client_id ON client_locations (tenant, client_id);

-- ---------------------------------------------------------------------------
-- tenant_companies: Alga kept this table name after the clients rename; its
-- company_id column became client_id and its tenant_id column became tenant.
-- At most one default client per tenant (partial unique index).
-- ---------------------------------------------------------------------------
CREATE TABLE tenant_companies (
    tenant     uuid        NOT NULL,
    client_id  uuid        NOT NULL,
    is_default boolean     NOT NULL DEFAULT false,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_companies_pkey PRIMARY KEY (tenant, client_id),
    CONSTRAINT tenant_companies_tenant_id_foreign FOREIGN KEY (tenant)
        REFERENCES tenants (tenant) ON DELETE CASCADE,
    CONSTRAINT tenant_companies_tenant_client_id_foreign FOREIGN KEY (tenant, client_id)
        REFERENCES clients (tenant, client_id)
);
CREATE UNIQUE INDEX idx_tenant_default_client ON tenant_companies (tenant) WHERE is_default = TRUE;

-- ---------------------------------------------------------------------------
-- tenant_settings: one row per tenant (PK = tenant).
-- ---------------------------------------------------------------------------
CREATE TABLE tenant_settings (
    tenant                  uuid        NOT NULL,
    onboarding_completed    boolean     DEFAULT false,
    onboarding_completed_at timestamptz,
    onboarding_skipped      boolean     DEFAULT false,
    onboarding_data         jsonb,
    settings                jsonb,
    created_at              timestamptz DEFAULT now(),
    updated_at              timestamptz DEFAULT now(),
    CONSTRAINT tenant_settings_pkey PRIMARY KEY (tenant),
    CONSTRAINT tenant_settings_tenant_foreign FOREIGN KEY (tenant)
        REFERENCES tenants (tenant) ON DELETE CASCADE
);

-- ---------------------------------------------------------------------------
-- tenant_email_settings: serial id; tenant_id was renamed tenant and retyped
-- uuid (2025-09). That migration dropped the old UNIQUE(tenant_id) and did not
-- re-create it, so Alga has NO unique constraint on tenant here: writers must
-- check for an existing row before inserting.
-- ---------------------------------------------------------------------------
CREATE TABLE tenant_email_settings (
    id                  serial       NOT NULL,
    tenant              uuid         NOT NULL,
    default_from_domain varchar(255),
    custom_domains      json         DEFAULT '[]',
    email_provider      text         DEFAULT 'smtp',
    provider_configs    json         DEFAULT '[]',
    fallback_enabled    boolean      DEFAULT true,
    tracking_enabled    boolean      DEFAULT false,
    max_daily_emails    integer,
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tenant_email_settings_pkey PRIMARY KEY (id),
    CONSTRAINT tenant_email_settings_email_provider_check
        CHECK (email_provider IN ('smtp', 'resend', 'hybrid')),
    CONSTRAINT tenant_email_settings_tenant_fkey FOREIGN KEY (tenant)
        REFERENCES tenants (tenant) ON DELETE CASCADE
);
CREATE INDEX idx_tenant_email_settings_tenant ON tenant_email_settings (tenant);

-- ---------------------------------------------------------------------------
-- contacts (client_id replaced company_id; it is nullable again in Alga).
-- The legacy phone_number column was dropped by Alga (2026); it is absent here.
-- ---------------------------------------------------------------------------
CREATE TABLE contacts (
    tenant          uuid        NOT NULL,
    contact_name_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    full_name       text,
    client_id       uuid,
    email           text,
    role            text,
    notes           text,
    is_inactive     boolean     DEFAULT false,
    is_client_admin boolean     NOT NULL DEFAULT false,
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now(),
    CONSTRAINT contacts_pkey PRIMARY KEY (tenant, contact_name_id),
    CONSTRAINT contacts_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT contacts_tenant_client_id_foreign FOREIGN KEY (tenant, client_id)
        REFERENCES clients (tenant, client_id)
);
CREATE INDEX contacts_is_client_admin_index ON contacts (is_client_admin);

-- ---------------------------------------------------------------------------
-- users. Alga's original primary key is (tenant, user_id, email), so email is
-- effectively NOT NULL; (tenant, user_id) is unique and is what other tables
-- reference. user_type is a knex enum ('internal' | 'client').
-- ---------------------------------------------------------------------------
CREATE TABLE users (
    tenant             uuid        NOT NULL,
    user_id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    username           text        NOT NULL,
    hashed_password    text        NOT NULL,
    first_name         text,
    last_name          text,
    email              text        NOT NULL,
    icon               text,
    auth_method        text,
    created_at         timestamptz DEFAULT now(),
    updated_at         timestamptz DEFAULT now(),
    two_factor_enabled boolean     DEFAULT false,
    two_factor_secret  text,
    is_google_user     boolean     DEFAULT false,
    rate               bigint,
    user_type          text        NOT NULL DEFAULT 'internal',
    is_inactive        boolean     DEFAULT false,
    contact_id         uuid,
    CONSTRAINT users_pkey PRIMARY KEY (tenant, user_id, email),
    CONSTRAINT users_tenant_user_id_unique UNIQUE (tenant, user_id),
    CONSTRAINT users_user_type_check CHECK (user_type IN ('internal', 'client')),
    CONSTRAINT users_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);

-- ---------------------------------------------------------------------------
-- roles / permissions / role_permissions / user_roles
-- msp and client flags: NOT NULL, default msp=true, client=false.
-- Alga has no unique constraint on (tenant, role_name, msp, client) nor on
-- (tenant, resource, action, msp, client): seeds de-duplicate in code.
-- ---------------------------------------------------------------------------
CREATE TABLE roles (
    tenant      uuid        NOT NULL,
    role_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    role_name   text        NOT NULL,
    description text,
    created_at  timestamptz DEFAULT now(),
    updated_at  timestamptz DEFAULT now(),
    msp         boolean     NOT NULL DEFAULT true,
    client      boolean     NOT NULL DEFAULT false,
    CONSTRAINT roles_pkey PRIMARY KEY (tenant, role_id),
    CONSTRAINT roles_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);
CREATE INDEX idx_roles_msp ON roles (msp);
CREATE INDEX idx_roles_client ON roles (client);

CREATE TABLE permissions (
    tenant        uuid        NOT NULL,
    permission_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    resource      text        NOT NULL,
    action        text        NOT NULL,
    created_at    timestamptz DEFAULT now(),
    msp           boolean     NOT NULL DEFAULT true,
    client        boolean     NOT NULL DEFAULT false,
    description   text,
    CONSTRAINT permissions_pkey PRIMARY KEY (tenant, permission_id),
    CONSTRAINT permissions_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);
CREATE INDEX idx_permissions_msp ON permissions (msp);
CREATE INDEX idx_permissions_client ON permissions (client);

CREATE TABLE role_permissions (
    tenant        uuid        NOT NULL,
    role_id       uuid        NOT NULL,
    permission_id uuid        NOT NULL,
    created_at    timestamptz DEFAULT now(),
    CONSTRAINT role_permissions_pkey PRIMARY KEY (tenant, role_id, permission_id),
    CONSTRAINT role_permissions_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT role_permissions_tenant_role_id_foreign FOREIGN KEY (tenant, role_id)
        REFERENCES roles (tenant, role_id),
    CONSTRAINT role_permissions_tenant_permission_id_foreign FOREIGN KEY (tenant, permission_id)
        REFERENCES permissions (tenant, permission_id)
);

CREATE TABLE user_roles (
    tenant     uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    role_id    uuid        NOT NULL,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT user_roles_pkey PRIMARY KEY (tenant, user_id, role_id),
    CONSTRAINT user_roles_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT user_roles_tenant_user_id_foreign FOREIGN KEY (tenant, user_id)
        REFERENCES users (tenant, user_id),
    CONSTRAINT user_roles_tenant_role_id_foreign FOREIGN KEY (tenant, role_id)
        REFERENCES roles (tenant, role_id)
);

-- ---------------------------------------------------------------------------
-- tax_regions / tax_rates. tax_rates.region_code -> tax_regions is
-- ON DELETE RESTRICT: delete rates before regions. tax_rate_id has no default.
-- ---------------------------------------------------------------------------
CREATE TABLE tax_regions (
    region_code varchar(255) NOT NULL,
    region_name text         NOT NULL,
    is_active   boolean      NOT NULL DEFAULT true,
    tenant      uuid         NOT NULL,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tax_regions_pkey PRIMARY KEY (tenant, region_code),
    CONSTRAINT tax_regions_tenant_foreign FOREIGN KEY (tenant)
        REFERENCES tenants (tenant) ON DELETE CASCADE
);

CREATE TABLE tax_rates (
    tax_rate_id    uuid          NOT NULL,
    tenant         uuid          NOT NULL,
    tax_percentage numeric(10,4) NOT NULL,
    description    text,
    start_date     date          NOT NULL,
    end_date       date,
    created_at     timestamptz   NOT NULL DEFAULT now(),
    updated_at     timestamptz   NOT NULL DEFAULT now(),
    region_code    varchar(255)  NOT NULL,
    is_active      boolean       NOT NULL DEFAULT true,
    CONSTRAINT tax_rates_pkey PRIMARY KEY (tax_rate_id),
    CONSTRAINT tax_rates_tenant_tax_rate_id_unique UNIQUE (tenant, tax_rate_id),
    CONSTRAINT tax_rates_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT tax_rates_tenant_region_code_fkey FOREIGN KEY (tenant, region_code)
        REFERENCES tax_regions (tenant, region_code) ON DELETE RESTRICT
);
CREATE INDEX idx_tax_rates_tenant_region_code ON tax_rates (tenant, region_code);

-- ---------------------------------------------------------------------------
-- tag_definitions / tag_mappings (the normalised replacement of "tags").
-- The nullable board (formerly channel) column of tag_definitions is omitted.
-- tag_mappings.created_by is a uuid referencing users: NULL, not 'system'.
-- ---------------------------------------------------------------------------
CREATE TABLE tag_definitions (
    tenant           uuid         NOT NULL,
    tag_id           uuid         NOT NULL DEFAULT gen_random_uuid(),
    tag_text         text         NOT NULL,
    tagged_type      text         NOT NULL,
    background_color varchar(255),
    text_color       varchar(255),
    created_at       timestamptz  DEFAULT now(),
    CONSTRAINT tag_definitions_pkey PRIMARY KEY (tenant, tag_id),
    CONSTRAINT tag_definitions_tenant_tag_text_tagged_type_unique UNIQUE (tenant, tag_text, tagged_type),
    CONSTRAINT tag_definitions_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant)
);
CREATE INDEX tag_definitions_tenant_tagged_type_index ON tag_definitions (tenant, tagged_type);

CREATE TABLE tag_mappings (
    tenant      uuid        NOT NULL,
    mapping_id  uuid        NOT NULL DEFAULT gen_random_uuid(),
    tag_id      uuid        NOT NULL,
    tagged_id   uuid        NOT NULL,
    tagged_type text        NOT NULL,
    created_at  timestamptz DEFAULT now(),
    created_by  uuid,
    CONSTRAINT tag_mappings_pkey PRIMARY KEY (tenant, mapping_id),
    CONSTRAINT tag_mappings_tenant_tag_id_tagged_id_unique UNIQUE (tenant, tag_id, tagged_id),
    CONSTRAINT tag_mappings_tenant_foreign FOREIGN KEY (tenant) REFERENCES tenants (tenant),
    CONSTRAINT tag_mappings_tenant_tag_id_foreign FOREIGN KEY (tenant, tag_id)
        REFERENCES tag_definitions (tenant, tag_id) ON DELETE CASCADE,
    CONSTRAINT tag_mappings_tenant_created_by_foreign FOREIGN KEY (tenant, created_by)
        REFERENCES users (tenant, user_id)
);
CREATE INDEX tag_mappings_tenant_tagged_id_tagged_type_index ON tag_mappings (tenant, tagged_id, tagged_type);

-- ---------------------------------------------------------------------------
COMMENT ON TABLE tenants IS 'Mirrors Alga PSA tenants (subset) for dev/test only; Alga PSA owns the production schema.';
COMMENT ON TABLE clients IS 'Mirrors Alga PSA clients (formerly companies) for dev/test only.';
COMMENT ON TABLE client_locations IS 'Mirrors Alga PSA client_locations (formerly company_locations) for dev/test only.';
COMMENT ON TABLE tenant_companies IS 'Mirrors Alga PSA tenant_companies (tenant <-> default client) for dev/test only.';
COMMENT ON TABLE tenant_settings IS 'Mirrors Alga PSA tenant_settings for dev/test only.';
COMMENT ON TABLE tenant_email_settings IS 'Mirrors Alga PSA tenant_email_settings for dev/test only.';
COMMENT ON TABLE contacts IS 'Mirrors Alga PSA contacts (subset) for dev/test only.';
COMMENT ON TABLE users IS 'Mirrors Alga PSA users (subset) for dev/test only.';
COMMENT ON TABLE roles IS 'Mirrors Alga PSA roles for dev/test only.';
COMMENT ON TABLE permissions IS 'Mirrors Alga PSA permissions for dev/test only.';
COMMENT ON TABLE role_permissions IS 'Mirrors Alga PSA role_permissions for dev/test only.';
COMMENT ON TABLE user_roles IS 'Mirrors Alga PSA user_roles for dev/test only.';
COMMENT ON TABLE tax_regions IS 'Mirrors Alga PSA tax_regions for dev/test only.';
COMMENT ON TABLE tax_rates IS 'Mirrors Alga PSA tax_rates (subset) for dev/test only.';
COMMENT ON TABLE tag_definitions IS 'Mirrors Alga PSA tag_definitions (subset) for dev/test only.';
COMMENT ON TABLE tag_mappings IS 'Mirrors Alga PSA tag_mappings for dev/test only.';
