"""Settings: environment plus Vault-rendered secret files, validated once at start-up.

Why one loader instead of scattered ``os.environ`` reads: the original worker looked keys up in three
places at call time, printed env fallbacks and discovered a missing key only when a workflow ran. Here
every variable is declared once (name, default, whether it is secret), parsed into one typed object
before anything connects, and a missing or malformed value stops start-up naming the variable, never
its value.

Sources and precedence (documented in docs/configuration.md):

1. ``SECRETS_DIR`` (default ``/vault/secrets``): every regular file in it is parsed for lines
   ``export NAME="value"`` (the Vault agent template format; ``NAME=value`` works too).
2. The process environment.

By default a value from a secret file wins over the environment, so a stale ``env:`` entry in a chart
cannot shadow the secret Vault rotated. ``SECRETS_PRECEDENCE=env`` reverses that for operators who
override secrets locally.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote
from uuid import UUID

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

if TYPE_CHECKING:
    from temporalio.common import WorkerDeploymentVersion

DEFAULT_SECRETS_DIR = "/vault/secrets"
DEFAULT_PEPPER_VARIABLE = "ALGA_AUTH_KEY"


class ConfigError(Exception):
    """A setting is missing or malformed. ``variables`` names them; no value is ever included."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        self.variables = [name for name, _ in problems]
        lines = [f"  {name}: {reason}" for name, reason in problems]
        super().__init__("invalid configuration:\n" + "\n".join(lines))


class EmailProvider(StrEnum):
    RESEND = "resend"
    SMTP = "smtp"
    OUTBOX = "outbox"


class SecretsPrecedence(StrEnum):
    FILES = "files"
    ENV = "env"


@dataclass(frozen=True)
class Variable:
    """One environment variable the worker reads: the single source for docs, chart and checks."""

    name: str
    field: str
    default: str | None
    secret: bool
    meaning: str


# Every variable the worker reads, besides the TEMPORAL_* connection variables that
# ``temporalio.envconfig`` reads (listed in TEMPORAL_VARIABLES). Order is the order of the docs.
VARIABLES: tuple[Variable, ...] = (
    Variable("TEMPORAL_TASK_QUEUE", "task_queue", "tenant-workflows", False,
             "Task queue the worker polls and the CLI starts workflows on."),
    Variable("TEMPORAL_WORKER_DEPLOYMENT_NAME", "worker_deployment_name", None, False,
             "Worker Deployment the worker joins (Worker Versioning), with BUILD_ID as its version; "
             "workflows stay pinned to the version that started them. Unset: versioning off."),
    # Payload encryption (alga_worker.payload_codec, docs/encryption.md).
    Variable("PAYLOAD_KEYS", "payload_keys", None, True,
             "Payload encryption keys, `<keyId>:<base64 of 32 random bytes>` separated by commas; every "
             "key decrypts. Unset: payloads are written plain (refused with NODE_ENV=production unless "
             "PAYLOAD_ENCRYPTION=off)."),
    Variable("PAYLOAD_ACTIVE_KEY_ID", "payload_active_key_id", None, False,
             "Key id (in PAYLOAD_KEYS) that encrypts new payloads; may be unset when there is one key."),
    Variable("PAYLOAD_ENCRYPTION", "payload_encryption", "auto", False,
             "auto (encrypt when PAYLOAD_KEYS is set; required with NODE_ENV=production), on (keys "
             "required) or off (write plain; keys still decrypt)."),
    Variable("DATABASE_URL", "database_url", None, True,
             "PostgreSQL URL for the worker's writes. Overrides the DB_* variables when set."),
    Variable("DB_HOST", "db_host", None, False, "PostgreSQL host (used when DATABASE_URL is unset)."),
    Variable("DB_PORT", "db_port", "5432", False, "PostgreSQL port."),
    Variable("DB_NAME_SERVER", "db_name", "server", False, "Alga PSA database name."),
    Variable("DB_USER_ADMIN", "db_user_admin", "postgres", False,
             "Role the worker writes with (Alga provisioning needs the admin role, as before)."),
    Variable("DB_PASSWORD_ADMIN", "db_password_admin", None, True, "Password of DB_USER_ADMIN."),
    Variable("DB_USER_SERVER", "db_user_server", None, False,
             "Alga web app role; `alga-worker check` verifies it can read what the worker writes."),
    Variable("DB_PASSWORD_SERVER", "db_password_server", None, True, "Password of DB_USER_SERVER."),
    Variable("DB_POOL_MIN", "db_pool_min", "1", False, "Minimum connections in the pool."),
    Variable("DB_POOL_MAX", "db_pool_max", "10", False, "Maximum connections in the pool."),
    Variable("DB_PREPARED_STATEMENTS", "db_prepared_statements", "false", False,
             "Let psycopg prepare statements server-side (after 5 executions). Off: safe behind PgBouncer "
             "in transaction mode."),
    Variable("ALGA_AUTH_KEY", "password_pepper", None, True,
             "Password pepper shared with the web app (PBKDF2 salt = pepper + salt hex). The variable "
             "name is set by PASSWORD_PEPPER_VARIABLE. Required: no default pepper."),
    Variable("PASSWORD_PEPPER_VARIABLE", "password_pepper_variable", DEFAULT_PEPPER_VARIABLE, False,
             "Name of the variable that holds the pepper (e.g. NEXTAUTH_SECRET for web apps that "
             "pepper with it)."),
    Variable("SALT_BYTES", "salt_bytes", "12", False, "Random salt length in bytes."),
    Variable("ITERATIONS", "iterations", "10000", False, "PBKDF2 iterations."),
    Variable("KEY_LENGTH", "key_length", "64", False, "PBKDF2 derived key length in bytes."),
    Variable("ALGORITHM", "algorithm", "sha512", False, "PBKDF2 digest: sha512 or sha256."),
    Variable("INTERNAL_API_SHARED_SECRET", "internal_api_shared_secret", None, True,
             "Sent as X-Internal-Secret on calls to nm-store's internal API."),
    Variable("NMSTORE_BASE_URL", "nmstore_base_url", None, False,
             "nm-store base URL for checkout-session status updates."),
    Variable("NM_STORE_URL", "nm_store_url", None, False,
             "nm-store base URL for the signed completion callback; defaults to NMSTORE_BASE_URL."),
    Variable("TEMPORAL_WEBHOOK_SECRET", "temporal_webhook_secret", None, True,
             "HMAC-SHA256 key of the X-Temporal-Signature header on the nm-store callback."),
    Variable("STRIPE_SECRET_KEY", "stripe_secret_key", None, True,
             "Stripe API key: fetch customer, subscription and seats from a checkout session."),
    Variable("STRIPE_API_BASE", "stripe_api_base", "https://api.stripe.com", False,
             "Stripe API base URL (a local fake in tests)."),
    Variable("MASTER_BILLING_TENANT_ID", "master_billing_tenant_id", None, False,
             "Tenant whose stripe_prices identify Alga PSA plans (stripe_subscriptions rows need it)."),
    Variable("MANAGEMENT_TENANT_ID", "management_tenant_id", None, False,
             "Tenant (Nine Minds) where each customer is tracked; unset: no customer tracking."),
    Variable("CLIENT_PORTAL_URL", "client_portal_url", None, False,
             "Management tenant's client-portal login, in the welcome email when a portal user exists."),
    Variable("APPLICATION_URL", "application_url", "http://localhost:3000", False,
             "Alga PSA URL used for links in emails."),
    Variable("EMAIL_PROVIDER", "email_provider", "outbox", False,
             "resend, smtp or outbox (writes .eml files to EMAIL_OUTBOX_DIR)."),
    Variable("EMAIL_FROM_ADDRESS", "email_from_address", "noreply@example.com", False,
             "Sender address."),
    Variable("EMAIL_FROM_NAME", "email_from_name", "Alga PSA", False, "Sender display name."),
    Variable("OPERATIONS_EMAIL", "operations_email", None, False,
             "Operations address: provisioning-failed notices go here. Unset: none are sent (a run that "
             "asks for one fails with ConfigurationError naming this variable)."),
    Variable("EMAIL_OUTBOX_DIR", "email_outbox_dir", None, False,
             "Folder for the outbox provider; unset: alga-worker-outbox in the system temp dir."),
    Variable("RESEND_API_KEY", "resend_api_key", None, True,
             "Resend API key (required when EMAIL_PROVIDER=resend)."),
    Variable("RESEND_API_URL", "resend_api_url", "https://api.resend.com", False,
             "Resend API base URL."),
    Variable("SMTP_HOST", "smtp_host", None, False, "SMTP server (required when EMAIL_PROVIDER=smtp)."),
    Variable("SMTP_PORT", "smtp_port", "587", False, "SMTP port."),
    Variable("SMTP_USERNAME", "smtp_username", None, False, "SMTP user."),
    Variable("SMTP_PASSWORD", "smtp_password", None, True, "SMTP password."),
    Variable("SMTP_STARTTLS", "smtp_starttls", "true", False, "Use STARTTLS on the SMTP connection."),
    # Tenant exports (tenantExportWorkflow, docs/lifecycle.md "Export"): an S3-compatible bucket, else a folder.
    Variable("EXPORT_S3_BUCKET", "export_s3_bucket", None, False,
             "Bucket tenant exports are written to (S3 or S3-compatible). Wins over EXPORT_DIR. Neither set: "
             "an export fails with ConfigurationError."),
    Variable("EXPORT_S3_PREFIX", "export_s3_prefix", "tenant-exports", False,
             "Key prefix of exports: <prefix>/<tenantId>/<exportId>/<table>.jsonl.gz and manifest.json."),
    Variable("EXPORT_S3_ENDPOINT_URL", "export_s3_endpoint_url", None, False,
             "S3 endpoint of a non-AWS store (MinIO, R2, Ceph ...); unset: AWS."),
    Variable("EXPORT_S3_REGION", "export_s3_region", None, False,
             "S3 region; unset: boto3's (AWS_REGION, AWS_DEFAULT_REGION, profile)."),
    Variable("EXPORT_S3_ACCESS_KEY_ID", "export_s3_access_key_id", None, True,
             "Access key id for the bucket (with EXPORT_S3_SECRET_ACCESS_KEY); unset: boto3's credential "
             "chain (IRSA, AWS_* variables, instance profile)."),
    Variable("EXPORT_S3_SECRET_ACCESS_KEY", "export_s3_secret_access_key", None, True,
             "Secret access key for the bucket (with EXPORT_S3_ACCESS_KEY_ID)."),
    Variable("EXPORT_DIR", "export_dir", None, False,
             "Local folder exports are written to when EXPORT_S3_BUCKET is unset (a mounted volume)."),
    Variable("EXPORT_BATCH_SIZE", "export_batch_size", "1000", False,
             "Rows fetched per batch while exporting a table (bounds the worker's memory)."),
    Variable("TENANT_DELETION_BATCH_SIZE", "tenant_deletion_batch_size", "1000", False,
             "Rows deleted per transaction while a tenant is deleted (bounds each transaction's locks)."),
    Variable("MAX_CONCURRENT_ACTIVITIES", "max_concurrent_activities", "20", False,
             "Activity slots per worker."),
    Variable("MAX_CONCURRENT_WORKFLOWS", "max_concurrent_workflow_tasks", "20", False,
             "Workflow-task slots per worker."),
    Variable("MAX_CACHED_WORKFLOWS", "max_cached_workflows", "500", False,
             "Sticky workflow cache size."),
    Variable("WORKFLOW_TASK_POLLERS", "workflow_task_pollers", "10", False,
             "Workflow-task pollers (the SDK's default 5 halves throughput)."),
    Variable("ACTIVITY_TASK_POLLERS", "activity_task_pollers", "10", False, "Activity-task pollers."),
    Variable("GRACEFUL_SHUTDOWN_TIMEOUT", "graceful_shutdown_seconds", "30", False,
             "Seconds in-flight activities get to finish after SIGTERM."),
    Variable("ENABLE_HEALTH_CHECK", "enable_health_check", "true", False,
             "Serve /healthz and /readyz."),
    Variable("HEALTH_CHECK_PORT", "health_check_port", "8080", False, "Health server port."),
    Variable("HEALTH_CHECK_HOST", "health_check_host", "0.0.0.0", False,  # noqa: S104
             "Health server bind address."),
    Variable("METRICS_PORT", "metrics_port", "9464", False,
             "Prometheus port (0 disables metrics)."),
    Variable("METRICS_HOST", "metrics_host", "0.0.0.0", False,  # noqa: S104
             "Prometheus bind address: an IPv4 or IPv6 literal (e.g. 127.0.0.1, ::)."),
    Variable("LOG_LEVEL", "log_level", "info", False, "debug, info, warning or error."),
    Variable("LOG_FORMAT", "log_format", "json", False, "json (production) or console."),
    Variable("NODE_ENV", "environment", "production", False,
             "Deployment environment label (name kept from the original chart); added to logs and "
             "metrics."),
    Variable("BUILD_ID", "build_id", "dev", False,
             "Build identifier (git sha) reported by healthCheckWorkflow and logs; the Worker "
             "Deployment version when TEMPORAL_WORKER_DEPLOYMENT_NAME is set (then 'dev' is refused)."),
    Variable("SECRETS_DIR", "secrets_dir", DEFAULT_SECRETS_DIR, False,
             "Folder of Vault-rendered `export NAME=\"value\"` files."),
    Variable("SECRETS_PRECEDENCE", "secrets_precedence", "files", False,
             "files (secret files win over env) or env."),
)

# Read by temporalio.envconfig (through ``override_env_vars``, so secret files count for them too).
TEMPORAL_VARIABLES: tuple[Variable, ...] = (
    Variable("TEMPORAL_ADDRESS", "", "localhost:7233", False, "Temporal frontend host:port."),
    Variable("TEMPORAL_NAMESPACE", "", "default", False, "Temporal namespace."),
    Variable("TEMPORAL_API_KEY", "", None, True, "API key (Temporal Cloud); turns TLS on."),
    Variable("TEMPORAL_TLS", "", None, False, "true/false: force TLS on or off."),
    Variable("TEMPORAL_TLS_CLIENT_CERT_PATH", "", None, False, "mTLS client certificate file."),
    Variable("TEMPORAL_TLS_CLIENT_KEY_PATH", "", None, False, "mTLS client key file."),
    Variable("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "", None, False, "CA bundle for the server."),
    Variable("TEMPORAL_TLS_SERVER_NAME", "", None, False, "Server name to verify (SNI)."),
)

# OpenTelemetry's standard exporter variables (their names and meaning as the OTel spec defines them),
# read through ``load_tracing_settings`` so secret files count for them too. Tracing is off unless an
# endpoint is set (runtime/tracing.py). The SDK's other standard variables (OTEL_BSP_*,
# OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_TIMEOUT ...) are read by the SDK itself from the environment.
DEFAULT_OTEL_SERVICE_NAME = "alga-temporal-worker"
OTEL_VARIABLES: tuple[Variable, ...] = (
    Variable("OTEL_EXPORTER_OTLP_ENDPOINT", "", None, False,
             "OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); /v1/traces is appended. "
             "Set: tracing on."),
    Variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", None, False,
             "Full OTLP/HTTP traces URL, used as is; wins over OTEL_EXPORTER_OTLP_ENDPOINT. Set: tracing on."),
    Variable("OTEL_EXPORTER_OTLP_HEADERS", "", None, True,
             "Headers sent with every export, `key=value,...` (values percent-encoded), e.g. an API key."),
    Variable("OTEL_SERVICE_NAME", "", DEFAULT_OTEL_SERVICE_NAME, False,
             "service.name of the worker's spans (operator commands: alga-worker-cli)."),
    Variable("OTEL_RESOURCE_ATTRIBUTES", "", None, False,
             "Extra resource attributes, `key=value,...`."),
)

# The codec server (`alga-worker codec-server`, runtime/codec_server.py): its own process and pod, so
# these are not worker variables (the worker never reads them; variable_names() leaves them out). It
# also reads PAYLOAD_KEYS, PAYLOAD_ACTIVE_KEY_ID, PAYLOAD_ENCRYPTION, LOG_LEVEL, LOG_FORMAT, NODE_ENV,
# BUILD_ID and SECRETS_DIR/SECRETS_PRECEDENCE as the worker does. Loaded by load_codec_server_settings.
CODEC_SERVER_VARIABLES: tuple[Variable, ...] = (
    Variable("CODEC_SERVER_TOKEN", "token", None, True,
             "Bearer token the codec server requires (`Authorization: Bearer <token>`, compared in constant "
             "time); at least 32 characters. Unset: CODEC_SERVER_TLS_CLIENT_CA must be set."),
    Variable("CODEC_SERVER_CORS_ORIGINS", "cors_origins", None, False,
             "Comma-separated origins (`https://host[:port]`) of the Temporal Web UI allowed to call the codec "
             "server from a browser. Unset: no CORS headers (the CLI needs none)."),
    Variable("CODEC_SERVER_TLS_CERT", "tls_cert", None, False,
             "PEM certificate (chain) file: the codec server serves HTTPS. Set with CODEC_SERVER_TLS_KEY."),
    Variable("CODEC_SERVER_TLS_KEY", "tls_key", None, False, "PEM private key file of CODEC_SERVER_TLS_CERT."),
    Variable("CODEC_SERVER_TLS_CLIENT_CA", "tls_client_ca", None, False,
             "PEM CA file: clients must present a certificate it signed (mTLS), checked in the TLS handshake."),
    Variable("CODEC_SERVER_MAX_BODY_BYTES", "max_body_bytes", "8388608", False,
             "Largest request body the codec server reads; larger requests get 413."),
)

_BY_NAME = {v.name: v for v in VARIABLES}


def read_secret_files(directory: Path) -> dict[str, str]:
    """Parse Vault agent output: ``export NAME="value"`` (or ``NAME=value``) lines in every file.

    Shell quoting is honoured with ``shlex`` so values with spaces, ``$`` or quotes survive exactly
    as the template wrote them. Comments and blank lines are ignored. Files are read in name order,
    so a later file wins on a repeated name.
    """
    values: dict[str, str] = {}
    if not directory.is_dir():
        return values
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                # comments=False: shlex would cut `pa#ss` at the hash, where a shell keeps it.
                tokens = shlex.split(line, comments=False)
            except ValueError as err:
                raise ConfigError([(f"{path.name}:{line_no}", f"unparseable line ({err})")]) from None
            if tokens and tokens[0] == "export":
                tokens = tokens[1:]
            # A word starting with '#' after the assignment is a trailing shell comment.
            for i, token in enumerate(tokens[1:], start=1):
                if token.startswith("#"):
                    tokens = tokens[:i]
                    break
            if len(tokens) != 1 or "=" not in tokens[0]:
                raise ConfigError([(f"{path.name}:{line_no}", "expected export NAME=\"value\"")])
            name, _, value = tokens[0].partition("=")
            if not name.isidentifier():
                raise ConfigError([(f"{path.name}:{line_no}", "invalid variable name")])
            values[name] = value
    return values


def merged_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with secret files folded in, by the configured precedence."""
    env = dict(os.environ if environ is None else environ)
    secrets_dir = Path(env.get("SECRETS_DIR", DEFAULT_SECRETS_DIR))
    files = read_secret_files(secrets_dir)
    precedence = env.get("SECRETS_PRECEDENCE", SecretsPrecedence.FILES.value)
    if precedence == SecretsPrecedence.ENV.value:
        return {**files, **env}
    return {**env, **files}


def _otel_pairs(value: str) -> list[tuple[str, str]]:
    """``key=value,...`` as OTel's env format defines it (values percent-decoded); ValueError if malformed."""
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        pairs.append((key.strip(), unquote(raw.strip())))
    return pairs


class TracingSettings(BaseModel):
    """OpenTelemetry export settings (OTEL_VARIABLES). Exists only when an endpoint is set: tracing on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: AnyHttpUrl | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT (base)
    traces_endpoint: AnyHttpUrl | None = None  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (full URL)
    headers: SecretStr | None = None
    service_name: str | None = Field(default=None, min_length=1, max_length=255)  # None: the default
    resource_attributes: str | None = None

    @property
    def traces_url(self) -> str:
        """Where spans are POSTed, as the OTel spec resolves it: the traces URL as is, else base + /v1/traces."""
        if self.traces_endpoint is not None:
            return str(self.traces_endpoint)
        return str(self.endpoint).rstrip("/") + "/v1/traces"

    def header_pairs(self) -> list[tuple[str, str]]:
        return [] if self.headers is None else _otel_pairs(self.headers.get_secret_value())

    def resource_attribute_pairs(self) -> list[tuple[str, str]]:
        return [] if self.resource_attributes is None else _otel_pairs(self.resource_attributes)

    def secret_values(self) -> list[str]:
        """The headers line and each header value (an API key may be logged on its own)."""
        if self.headers is None:
            return []
        return [self.headers.get_secret_value(), *(value for _, value in self.header_pairs() if value)]


_OTEL_FIELDS = {"OTEL_EXPORTER_OTLP_ENDPOINT": "endpoint", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "traces_endpoint",
                "OTEL_EXPORTER_OTLP_HEADERS": "headers", "OTEL_SERVICE_NAME": "service_name",
                "OTEL_RESOURCE_ATTRIBUTES": "resource_attributes"}


def load_tracing_settings(environ: Mapping[str, str]) -> TracingSettings | None:
    """The OTEL_* variables of ``environ`` (the merged environment), or None when no endpoint is set
    (tracing off). Raises :class:`ConfigError` naming each malformed variable, never its value."""
    raw = {field: environ[name] for name, field in _OTEL_FIELDS.items() if environ.get(name)}
    if "endpoint" not in raw and "traces_endpoint" not in raw:
        return None
    problems: list[tuple[str, str]] = []
    for name, field in (("OTEL_EXPORTER_OTLP_HEADERS", "headers"),
                        ("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes")):
        try:
            _otel_pairs(raw.get(field, ""))
        except ValueError as err:
            problems.append((name, str(err)))
    try:
        settings = TracingSettings.model_validate(raw)
    except ValidationError as err:
        by_field = {field: name for name, field in _OTEL_FIELDS.items()}
        problems += [(by_field.get(str(e["loc"][0]), str(e["loc"][0])), e["msg"])
                     for e in err.errors(include_input=False, include_url=False)]
    if problems:
        raise ConfigError(problems)
    return settings


class Settings(BaseModel):
    """The worker's whole configuration. Built by :func:`load_settings`, never from raw env."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_queue: str = Field(min_length=1, max_length=200)
    # No '.' (the server splits "<deployment>.<build id>" at the first dot), ':' or whitespace.
    worker_deployment_name: str | None = Field(default=None, max_length=200, pattern=r"^[^.:\s]+$")
    # Payload encryption (alga_worker.payload_codec); parsed and cross-checked in load_settings.
    payload_keys: SecretStr | None = Field(default=None, repr=False)
    payload_active_key_id: str | None = None
    payload_encryption: Literal["auto", "on", "off"] = "auto"
    database_url: SecretStr | None = None
    db_host: str | None = None
    db_port: int = Field(ge=1, le=65535)
    db_name: str = Field(min_length=1)
    db_user_admin: str = Field(min_length=1)
    db_password_admin: SecretStr | None = None
    db_user_server: str | None = None
    db_password_server: SecretStr | None = None
    db_pool_min: int = Field(ge=0, le=100)
    db_pool_max: int = Field(ge=1, le=200)
    db_prepared_statements: bool

    password_pepper: SecretStr = Field(min_length=4)  # shorter could not be redacted from logs
    password_pepper_variable: str
    salt_bytes: int = Field(ge=8, le=64)
    iterations: int = Field(ge=1000, le=10_000_000)
    key_length: int = Field(ge=16, le=128)
    algorithm: Literal["sha512", "sha256"]

    internal_api_shared_secret: SecretStr | None = None
    nmstore_base_url: AnyHttpUrl | None = None
    nm_store_url: AnyHttpUrl | None = None
    temporal_webhook_secret: SecretStr | None = None
    stripe_secret_key: SecretStr | None = None
    stripe_api_base: AnyHttpUrl
    master_billing_tenant_id: UUID | None = None
    management_tenant_id: UUID | None = None
    client_portal_url: AnyHttpUrl | None = None
    application_url: AnyHttpUrl

    email_provider: EmailProvider
    email_from_address: str = Field(pattern=r"^[^\s@]+@[^\s@]+\.[^\s@]+$")
    email_from_name: str = Field(min_length=1, max_length=200)
    operations_email: str | None = None
    email_outbox_dir: Path
    resend_api_key: SecretStr | None = None
    resend_api_url: AnyHttpUrl
    smtp_host: str | None = None
    smtp_port: int = Field(ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool

    # Tenant exports (docs/lifecycle.md "Export").
    export_s3_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    export_s3_prefix: str = Field(max_length=512, pattern=r"^[A-Za-z0-9!_.*'()/-]*$")
    export_s3_endpoint_url: AnyHttpUrl | None = None
    export_s3_region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,64}$")
    export_s3_access_key_id: SecretStr | None = None
    export_s3_secret_access_key: SecretStr | None = None
    export_dir: Path | None = None
    export_batch_size: int = Field(ge=1, le=100_000)
    # Tenant deletion (docs/lifecycle.md "Deletion").
    tenant_deletion_batch_size: int = Field(ge=1, le=100_000)

    max_concurrent_activities: int = Field(ge=1, le=1000)
    max_concurrent_workflow_tasks: int = Field(ge=2, le=1000)
    max_cached_workflows: int = Field(ge=0, le=100_000)
    workflow_task_pollers: int = Field(ge=2, le=200)
    activity_task_pollers: int = Field(ge=1, le=200)
    graceful_shutdown_seconds: float = Field(ge=0, le=3600)

    enable_health_check: bool
    health_check_port: int = Field(ge=0, le=65535)
    health_check_host: str
    metrics_port: int = Field(ge=0, le=65535)
    metrics_host: str
    log_level: Literal["debug", "info", "warning", "error"]
    log_format: Literal["json", "console"]
    environment: str = Field(min_length=1, max_length=64)
    build_id: str = Field(min_length=1, max_length=128)
    secrets_dir: Path
    secrets_precedence: SecretsPrecedence

    # Connection arguments for temporalio.client.Client.connect, from envconfig (not a variable).
    temporal_connect: dict[str, Any] = Field(default_factory=dict, repr=False)
    # OpenTelemetry export (OTEL_VARIABLES); None: tracing off.
    tracing: TracingSettings | None = None

    @field_validator("log_level", "email_provider", "payload_encryption", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("operations_email")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        from alga_worker.email.message import normalize_address

        return None if value is None else normalize_address(value)

    @field_validator("export_s3_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if any(part in ("", ".", "..") for part in value.split("/")) and value:
            raise ValueError("must be key segments separated by single slashes, without . or ..")
        return value

    @field_validator("metrics_host")
    @classmethod
    def _ip_literal(cls, value: str) -> str:
        # The SDK's Prometheus exporter binds a socket address: a host name would fail at start-up.
        try:
            ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address literal (e.g. 0.0.0.0 or ::)") from None
        return value.strip("[]")

    @property
    def callback_base_url(self) -> AnyHttpUrl | None:
        """Where the signed callback goes: NM_STORE_URL, else NMSTORE_BASE_URL (never a default host)."""
        return self.nm_store_url or self.nmstore_base_url

    def missing_checkout_settings(self) -> list[str]:
        """Variables a run with a checkout session id needs and that are unset (names, never values)."""
        missing = []
        if self.nmstore_base_url is None:
            missing.append("NMSTORE_BASE_URL")
        if self.internal_api_shared_secret is None:
            missing.append("INTERNAL_API_SHARED_SECRET")
        if self.temporal_webhook_secret is None:
            missing.append("TEMPORAL_WEBHOOK_SECRET")
        return missing

    @property
    def worker_deployment_version(self) -> WorkerDeploymentVersion | None:
        """The Worker Deployment version this worker polls as (deployment name + BUILD_ID), or None
        when versioning is off (TEMPORAL_WORKER_DEPLOYMENT_NAME unset)."""
        if self.worker_deployment_name is None:
            return None
        from temporalio.common import WorkerDeploymentVersion

        return WorkerDeploymentVersion(deployment_name=self.worker_deployment_name, build_id=self.build_id)

    @property
    def graceful_shutdown_timeout(self) -> timedelta:
        return timedelta(seconds=self.graceful_shutdown_seconds)

    @property
    def temporal_address(self) -> str:
        return str(self.temporal_connect.get("target_host", "localhost:7233"))

    @property
    def temporal_namespace(self) -> str:
        return str(self.temporal_connect.get("namespace", "default"))

    def admin_conninfo(self) -> str:
        """libpq URL for the worker's own writes (DATABASE_URL, else DB_* with the admin role)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return _build_url(self.db_host or "", self.db_port, self.db_name, self.db_user_admin,
                          self.db_password_admin)

    def server_conninfo(self) -> str | None:
        """libpq URL of the web app's role, when configured (checked, never written with)."""
        if not self.db_user_server or self.db_host is None:
            return None
        return _build_url(self.db_host, self.db_port, self.db_name, self.db_user_server,
                          self.db_password_server)

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redaction filter."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
        api_key = self.temporal_connect.get("api_key")
        if api_key:
            found.append(str(api_key))
        if self.tracing is not None:
            found.extend(self.tracing.secret_values())
        if self.payload_keys is not None:  # each key on its own too (a log line may hold just one)
            found.extend(part.partition(":")[2].strip()
                         for part in self.payload_keys.get_secret_value().split(",") if ":" in part)
        return found


def _build_url(host: str, port: int, db: str, user: str, password: SecretStr | None) -> str:
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password.get_secret_value(), safe="")
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{auth}@/{quote(db, safe='')}?host={quote(host, safe='/')}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{quote(db, safe='')}"


def variable_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every variable name the settings module reads, with the pepper's configured name."""
    env = merged_environment(environ) if environ is not None else {}
    pepper = (env.get("PASSWORD_PEPPER_VARIABLE") or DEFAULT_PEPPER_VARIABLE)
    names = [v.name for v in VARIABLES]
    names[names.index("ALGA_AUTH_KEY")] = pepper
    return names + [v.name for v in (*TEMPORAL_VARIABLES, *OTEL_VARIABLES)]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read env and secret files once; raise :class:`ConfigError` naming every bad variable."""
    env = merged_environment(environ)
    pepper_variable = (env.get("PASSWORD_PEPPER_VARIABLE") or DEFAULT_PEPPER_VARIABLE)
    raw: dict[str, Any] = {}
    field_to_var: dict[str, str] = {}
    for var in VARIABLES:
        name = pepper_variable if var.field == "password_pepper" else var.name
        field_to_var[var.field] = name
        value = env.get(name)
        if value is None or value == "":
            value = var.default
        if value is not None:
            raw[var.field] = value
    # The system temp dir (TMPDIR, /tmp in the image: the one writable path on a read-only root).
    raw.setdefault("email_outbox_dir", str(Path(tempfile.gettempdir()) / "alga-worker-outbox"))
    problems = _cross_checks(raw, field_to_var)
    try:
        raw["temporal_connect"] = _temporal_connect_config(env)
    except Exception as err:  # envconfig raises plain errors for unreadable cert files
        problems.append(("TEMPORAL_*", f"{type(err).__name__}: cannot load connection config"))
    try:
        raw["tracing"] = load_tracing_settings(env)
    except ConfigError as err:
        problems.extend(err.problems)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as err:
        for item in err.errors(include_input=False, include_url=False):
            loc = item["loc"][0] if item["loc"] else ""
            message = item["msg"]
            var_name = field_to_var.get(str(loc), str(loc))
            reason = "required but not set" if item["type"] == "missing" else message
            problems.append((var_name, reason))
    if problems:
        raise ConfigError(problems)
    return settings


def _cross_checks(raw: Mapping[str, Any], field_to_var: Mapping[str, str]) -> list[tuple[str, str]]:
    """Rules that span variables, checked on the raw values so all problems are reported at once."""
    problems: list[tuple[str, str]] = []
    if not raw.get("database_url") and not raw.get("db_host"):
        problems.append(("DB_HOST", "required when DATABASE_URL is unset"))
    try:
        if int(raw.get("db_pool_min", 0)) > int(raw.get("db_pool_max", 0)):
            problems.append(("DB_POOL_MIN", "must not exceed DB_POOL_MAX"))
    except ValueError:
        pass  # reported by field validation
    provider = str(raw.get("email_provider", "")).lower()
    if provider == EmailProvider.RESEND.value and not raw.get("resend_api_key"):
        problems.append(("RESEND_API_KEY", "required when EMAIL_PROVIDER=resend"))
    if provider == EmailProvider.SMTP.value and not raw.get("smtp_host"):
        problems.append(("SMTP_HOST", "required when EMAIL_PROVIDER=smtp"))
    if bool(raw.get("export_s3_access_key_id")) != bool(raw.get("export_s3_secret_access_key")):
        problems.append(("EXPORT_S3_SECRET_ACCESS_KEY" if raw.get("export_s3_access_key_id")
                         else "EXPORT_S3_ACCESS_KEY_ID", "EXPORT_S3_ACCESS_KEY_ID and EXPORT_S3_SECRET_ACCESS_KEY "
                         "are set together or not at all"))
    if raw.get("worker_deployment_name") and str(raw.get("build_id", "")).strip().lower() == "dev":
        # "dev" is the Dockerfile's default: every image built without a build id would join (and be
        # pinned to) the same version, so a rollout could not tell old code from new.
        problems.append(("BUILD_ID", "must be the image's build id (git sha), not 'dev', when "
                                     "TEMPORAL_WORKER_DEPLOYMENT_NAME is set"))
    from alga_worker.payload_codec import settings_problems

    # The format only: the production policy (keys required) is checked where a worker starts
    # (alga_worker.payload_codec.require_encryption_policy), not for every Settings a tool builds.
    problems += settings_problems(raw.get("payload_keys"), raw.get("payload_active_key_id"),
                                  raw.get("payload_encryption"), environment=None, check_mode=False)
    return problems


def _temporal_connect_config(env: Mapping[str, str]) -> dict[str, Any]:
    """Client.connect kwargs from temporalio.envconfig over the merged env (files count too)."""
    from temporalio.envconfig import ClientConfig

    temporal_env = {k: v for k, v in env.items() if k.startswith("TEMPORAL_")}
    config = ClientConfig.load_client_connect_config(override_env_vars=temporal_env,
                                                      disable_file="TEMPORAL_CONFIG_FILE" not in env)
    config.setdefault("target_host", "localhost:7233")
    config.setdefault("namespace", "default")
    return dict(config)


class CodecServerSettings(BaseModel):
    """The codec server's configuration (CODEC_SERVER_VARIABLES and the PAYLOAD_* keys). No database,
    no pepper: the codec server holds only what it needs to decrypt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr | None = Field(default=None, min_length=32)
    cors_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_body_bytes: int = Field(ge=1024, le=256 * 1024 * 1024)
    payload_keys: SecretStr
    payload_active_key_id: str | None = None
    payload_encryption: str = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    environment: str = "production"
    build_id: str = "dev"

    def secret_values(self) -> list[str]:
        """The token, the keys variable and each key's base64, for the log redaction filter."""
        found = [self.payload_keys.get_secret_value()]
        found += [item.partition(":")[2].strip() for item in self.payload_keys.get_secret_value().split(",")
                  if item.partition(":")[2].strip()]
        if self.token is not None:
            found.append(self.token.get_secret_value())
        return found


def load_codec_server_settings(environ: Mapping[str, str] | None = None) -> CodecServerSettings:
    """Read the codec server's variables (env and secret files); raise :class:`ConfigError` naming every
    bad variable, never a value."""
    from alga_worker.payload_codec import PayloadKeyError, PayloadKeys
    from alga_worker.runtime.codec_server import parse_origins

    env = merged_environment(environ)

    def value(name: str) -> str | None:
        declared = _CODEC_SERVER_BY_NAME.get(name) or _BY_NAME.get(name)
        got = env.get(name)
        return got if got not in (None, "") else (declared.default if declared else None)

    problems: list[tuple[str, str]] = []
    raw: dict[str, Any] = {var.field: value(var.name) for var in CODEC_SERVER_VARIABLES if value(var.name) is not None}
    try:
        raw["cors_origins"] = parse_origins(raw.get("cors_origins"))
    except ValueError as err:
        problems.append(("CODEC_SERVER_CORS_ORIGINS", str(err)))
        raw.pop("cors_origins")
    for name, field in (("CODEC_SERVER_TLS_CERT", "tls_cert"), ("CODEC_SERVER_TLS_KEY", "tls_key"),
                        ("CODEC_SERVER_TLS_CLIENT_CA", "tls_client_ca")):
        if field in raw and not Path(raw[field]).is_file():
            problems.append((name, "not a readable file"))
    if ("tls_cert" in raw) != ("tls_key" in raw):
        problems.append(("CODEC_SERVER_TLS_KEY" if "tls_cert" in raw else "CODEC_SERVER_TLS_CERT",
                         "CODEC_SERVER_TLS_CERT and CODEC_SERVER_TLS_KEY are set together"))
    if "tls_client_ca" in raw and "tls_cert" not in raw:
        problems.append(("CODEC_SERVER_TLS_CLIENT_CA", "needs CODEC_SERVER_TLS_CERT and CODEC_SERVER_TLS_KEY"))
    if "token" not in raw and "tls_client_ca" not in raw:
        problems.append(("CODEC_SERVER_TOKEN", "required unless CODEC_SERVER_TLS_CLIENT_CA is set: the codec "
                                               "server never serves decrypted payloads unauthenticated"))
    keys = value("PAYLOAD_KEYS")
    active = value("PAYLOAD_ACTIVE_KEY_ID")
    if not keys or not keys.strip():
        problems.append(("PAYLOAD_KEYS", "required: the codec server has no key to decrypt with"))
    else:
        raw["payload_keys"] = keys
        try:
            PayloadKeys.parse(keys, active)
        except PayloadKeyError as err:
            problems.append((err.variable, err.reason))
    raw["payload_active_key_id"] = active
    for name, field in (("PAYLOAD_ENCRYPTION", "payload_encryption"), ("LOG_LEVEL", "log_level"),
                        ("LOG_FORMAT", "log_format"), ("NODE_ENV", "environment"), ("BUILD_ID", "build_id")):
        got = value(name)
        if got is not None:
            raw[field] = got.lower() if field in ("log_level", "log_format", "payload_encryption") else got
    by_field = {var.field: var.name for var in CODEC_SERVER_VARIABLES}
    by_field.update(payload_keys="PAYLOAD_KEYS", payload_active_key_id="PAYLOAD_ACTIVE_KEY_ID",
                    payload_encryption="PAYLOAD_ENCRYPTION", log_level="LOG_LEVEL", log_format="LOG_FORMAT",
                    environment="NODE_ENV", build_id="BUILD_ID")
    settings: CodecServerSettings | None = None
    try:
        settings = CodecServerSettings.model_validate(raw)
    except ValidationError as err:
        for item in err.errors(include_input=False, include_url=False):
            name = by_field.get(str(item["loc"][0]) if item["loc"] else "", str(item["loc"]))
            if not any(name == known for known, _ in problems):
                problems.append((name, "required but not set" if item["type"] == "missing" else item["msg"]))
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


_CODEC_SERVER_BY_NAME = {v.name: v for v in CODEC_SERVER_VARIABLES}


def describe_variable(name: str) -> Variable | None:
    """Look up one variable's declaration (used by the CLI's `check` output and docs tests)."""
    return _BY_NAME.get(name)


def database_conninfo(environ: Mapping[str, str] | None = None) -> str:
    """Only the database part of the settings: for `db migrate`, which must not need the pepper."""
    env = merged_environment(environ)
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    host = env.get("DB_HOST")
    if not host:
        raise ConfigError([("DB_HOST", "required when DATABASE_URL is unset")])
    try:
        port = int(env.get("DB_PORT") or "5432")
    except ValueError:
        raise ConfigError([("DB_PORT", "must be an integer")]) from None
    password = env.get("DB_PASSWORD_ADMIN")
    return _build_url(host, port, env.get("DB_NAME_SERVER") or "server", env.get("DB_USER_ADMIN") or "postgres",
                      SecretStr(password) if password else None)


@dataclass(frozen=True)
class ClientSettings:
    """What operator commands need: where Temporal is and which queue. No database, no pepper."""

    temporal_connect: dict[str, Any]
    task_queue: str
    # TEMPORAL_WORKER_DEPLOYMENT_NAME: `deployment` commands and a pinned health check need it.
    worker_deployment_name: str | None = None
    # Payload encryption, as the worker's (alga_worker.payload_codec.data_converter reads these).
    payload_keys: SecretStr | None = dataclasses.field(default=None, repr=False)
    payload_active_key_id: str | None = None
    payload_encryption: str = "auto"


def load_client_settings(environ: Mapping[str, str] | None = None) -> ClientSettings:
    env = merged_environment(environ)
    try:
        connect = _temporal_connect_config(env)
    except Exception as err:
        raise ConfigError([("TEMPORAL_*", f"{type(err).__name__}: cannot load connection config")]) from None
    from alga_worker.payload_codec import settings_problems

    keys, active = env.get("PAYLOAD_KEYS") or None, env.get("PAYLOAD_ACTIVE_KEY_ID") or None
    mode = (env.get("PAYLOAD_ENCRYPTION") or "auto").strip().lower()
    # No production refusal here: an operator's plain start still runs (the worker decodes plain input).
    problems = settings_problems(keys, active, mode, environment=None)
    if problems:
        raise ConfigError(problems)
    return ClientSettings(temporal_connect=connect,
                          task_queue=env.get("TEMPORAL_TASK_QUEUE") or "tenant-workflows",
                          worker_deployment_name=env.get("TEMPORAL_WORKER_DEPLOYMENT_NAME") or None,
                          payload_keys=SecretStr(keys) if keys else None,
                          payload_active_key_id=active.strip() if active else None,
                          payload_encryption=mode)
