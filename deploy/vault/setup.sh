#!/usr/bin/env bash
# Create (idempotently) everything Vault needs for the temporal-worker chart with vault.enabled:
#   1. secret/alga-psa/temporal-worker: internal_api_shared_secret (X-Internal-Secret) and
#      temporal_webhook_secret (the X-Temporal-Signature key), the two secrets the worker shares with
#      nm-store, and payload_keys (PAYLOAD_KEYS: from the environment, else one new key; see 1b). Each is created once (never replaced, never printed): from the environment
#      (INTERNAL_API_SHARED_SECRET, TEMPORAL_WEBHOOK_SECRET) when set there, so an nm-store that already
#      holds a value keeps it, else a random 48-byte value that nm-store is then given;
#   2. secret/alga-psa/shared: checks nextauth_secret (the web app's NEXTAUTH_SECRET, the password
#      pepper), postgres_password, db_password_server and resend_api_key exist (and stripe_secret_key,
#      optional). Missing keys are added only from the environment (NEXTAUTH_SECRET,
#      DB_PASSWORD_ADMIN, DB_PASSWORD_SERVER, RESEND_API_KEY, STRIPE_SECRET_KEY): they must equal
#      what the web app, the database and Stripe use, so this script never invents them. Other keys
#      (the original worker's alga_auth_key) are left as they are;
#   3. the policy from temporal-worker-policy.hcl, its paths moved to KV_MOUNT/KV_PREFIX (written
#      only when it differs);
#   4. the Kubernetes auth role bound to the worker's service account and namespace (written only
#      when it differs).
# The role and policy are temporal-worker-py: the original TypeScript worker's `temporal-worker` role
# and policy are never touched (docs/cutover.md). Safe to re-run. Secret values go to Vault through
# stdin only (not argv, not the terminal).
#
# Usage: VAULT_ADDR=... VAULT_TOKEN=... deploy/vault/setup.sh
# Settings (environment): NAMESPACE (msp), SERVICE_ACCOUNT (temporal-worker-py),
#   VAULT_ROLE (temporal-worker-py), VAULT_POLICY (temporal-worker-py), KV_MOUNT (secret),
#   KV_PREFIX (alga-psa; staging: alga-psa-staging, see deploy/helm/values-staging.yaml),
#   K8S_AUTH_PATH (kubernetes), TOKEN_TTL (1h), TOKEN_MAX_TTL (4h).
set -euo pipefail

NAMESPACE="${NAMESPACE:-msp}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-temporal-worker-py}"
VAULT_ROLE="${VAULT_ROLE:-temporal-worker-py}"
VAULT_POLICY="${VAULT_POLICY:-temporal-worker-py}"
KV_MOUNT="${KV_MOUNT:-secret}"
KV_PREFIX="${KV_PREFIX:-alga-psa}"
K8S_AUTH_PATH="${K8S_AUTH_PATH:-kubernetes}"
TOKEN_TTL="${TOKEN_TTL:-1h}"
TOKEN_MAX_TTL="${TOKEN_MAX_TTL:-4h}"

[[ "${KV_PREFIX}" =~ ^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$ ]] || { printf '[vault-setup] ERROR: bad KV_PREFIX\n' >&2; exit 1; }
[[ "${KV_MOUNT}" =~ ^[A-Za-z0-9_-]+$ ]] || { printf '[vault-setup] ERROR: bad KV_MOUNT\n' >&2; exit 1; }
WORKER_PATH="${KV_PREFIX}/temporal-worker"
SHARED_PATH="${KV_PREFIX}/shared"
POLICY_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/temporal-worker-policy.hcl"

log() { printf '[vault-setup] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v vault > /dev/null 2>&1 || die "the vault CLI is not on PATH"
[[ -r "${POLICY_FILE}" ]] || die "policy file ${POLICY_FILE} not found"
vault token lookup > /dev/null 2>&1 || die "not logged in to Vault (set VAULT_ADDR and VAULT_TOKEN)"

# True if the KV v2 secret at $1 exists (any version).
kv_exists() { vault kv get -mount="${KV_MOUNT}" "$1" > /dev/null 2>&1; }

# True if the KV v2 secret at $1 has a non-empty key $2.
kv_has_key() {
  local value
  value="$(vault kv get -mount="${KV_MOUNT}" -field="$2" "$1" 2> /dev/null)" || return 1
  [[ -n "${value}" ]]
}

# Store key $2 at path $1 with the value read from stdin: patch an existing secret (other keys kept),
# put a new one.
kv_store_stdin() {
  if kv_exists "$1"; then
    vault kv patch -mount="${KV_MOUNT}" "$1" "$2=-" > /dev/null
  else
    vault kv put -mount="${KV_MOUNT}" "$1" "$2=-" > /dev/null
  fi
}

# 48 random bytes, base64url without padding: 64 characters, safe in an HTTP header.
random_secret() { head -c 48 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'; }

# 0. The Kubernetes auth method must already be enabled and configured (docs/deployment.md).
if ! vault auth list 2> /dev/null | grep -q "^${K8S_AUTH_PATH}/"; then
  die "auth method ${K8S_AUTH_PATH}/ is not enabled: vault auth enable -path=${K8S_AUTH_PATH} kubernetes (see docs/deployment.md)"
fi

# 1. The secrets the worker shares with nm-store: key -> environment variable that may supply it.
for pair in internal_api_shared_secret:INTERNAL_API_SHARED_SECRET \
            temporal_webhook_secret:TEMPORAL_WEBHOOK_SECRET; do
  key="${pair%%:*}"
  var="${pair#*:}"
  if kv_has_key "${WORKER_PATH}" "${key}"; then
    log "${KV_MOUNT}/${WORKER_PATH}: ${key} exists (kept)"
  elif [[ -n "${!var:-}" ]]; then
    printf '%s' "${!var}" | kv_store_stdin "${WORKER_PATH}" "${key}"
    log "${KV_MOUNT}/${WORKER_PATH}: ${key} stored from \$${var}"
  else
    random_secret | kv_store_stdin "${WORKER_PATH}" "${key}"
    log "${KV_MOUNT}/${WORKER_PATH}: ${key} created (48 random bytes)"
    log "  give nm-store the same value; read it with vault kv get -field=${key}"
  fi
done

# 1b. The payload encryption keys (PAYLOAD_KEYS, docs/encryption.md): created once, never replaced.
#     From $PAYLOAD_KEYS when set (callers that already encrypt hold these keys), else one new key
#     k<YYYYMM>:<base64 of 32 random bytes>, which nm-store and the web app are then given. Rotation
#     adds keys to the value by hand (docs/runbooks/payload-key-rotation.md).
if kv_has_key "${WORKER_PATH}" payload_keys; then
  log "${KV_MOUNT}/${WORKER_PATH}: payload_keys exists (kept)"
elif [[ -n "${PAYLOAD_KEYS:-}" ]]; then
  printf '%s' "${PAYLOAD_KEYS}" | kv_store_stdin "${WORKER_PATH}" payload_keys
  log "${KV_MOUNT}/${WORKER_PATH}: payload_keys stored from \$PAYLOAD_KEYS"
else
  printf 'k%s:%s' "$(date -u +%Y%m)" "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" \
    | kv_store_stdin "${WORKER_PATH}" payload_keys
  log "${KV_MOUNT}/${WORKER_PATH}: payload_keys created (one key, k$(date -u +%Y%m))"
  log "  give nm-store and the web app the same value; read it with vault kv get -field=payload_keys"
fi

# 2. Shared secrets: key -> environment variable that may supply a missing one.
missing=()
for pair in nextauth_secret:NEXTAUTH_SECRET postgres_password:DB_PASSWORD_ADMIN \
            db_password_server:DB_PASSWORD_SERVER resend_api_key:RESEND_API_KEY; do
  key="${pair%%:*}"
  var="${pair#*:}"
  if kv_has_key "${SHARED_PATH}" "${key}"; then
    log "${KV_MOUNT}/${SHARED_PATH}: ${key} exists (kept)"
  elif [[ -n "${!var:-}" ]]; then
    printf '%s' "${!var}" | kv_store_stdin "${SHARED_PATH}" "${key}"
    log "${KV_MOUNT}/${SHARED_PATH}: ${key} stored from \$${var}"
  else
    missing+=("${key} (set \$${var} to add it)")
  fi
done

# Optional: Stripe (checkout sessions' seats and subscription records). Stored when given, else noted.
if kv_has_key "${SHARED_PATH}" stripe_secret_key; then
  log "${KV_MOUNT}/${SHARED_PATH}: stripe_secret_key exists (kept)"
elif [[ -n "${STRIPE_SECRET_KEY:-}" ]]; then
  printf '%s' "${STRIPE_SECRET_KEY}" | kv_store_stdin "${SHARED_PATH}" stripe_secret_key
  log "${KV_MOUNT}/${SHARED_PATH}: stripe_secret_key stored from \$STRIPE_SECRET_KEY"
else
  log "${KV_MOUNT}/${SHARED_PATH}: stripe_secret_key absent (optional: without it no Stripe details are fetched)"
fi

# 3. Policy: the file's paths (secret/data/alga-psa/...) under KV_MOUNT and KV_PREFIX.
policy_text="$(sed -e "s#\"secret/data/alga-psa/#\"${KV_MOUNT}/data/${KV_PREFIX}/#" "${POLICY_FILE}")"
if [[ "$(vault policy read "${VAULT_POLICY}" 2> /dev/null || true)" == "${policy_text}" ]]; then
  log "policy ${VAULT_POLICY}: up to date"
else
  policy_tmp="$(mktemp)"
  trap 'rm -f "${policy_tmp}"' EXIT
  printf '%s\n' "${policy_text}" > "${policy_tmp}"
  vault policy write "${VAULT_POLICY}" "${policy_tmp}" > /dev/null
  log "policy ${VAULT_POLICY}: written"
fi

# 4. Kubernetes auth role bound to the service account and namespace.
role_path="auth/${K8S_AUTH_PATH}/role/${VAULT_ROLE}"
role_field() { vault read -field="$1" "${role_path}" 2> /dev/null || true; }
if [[ "$(role_field bound_service_account_names)" == "[${SERVICE_ACCOUNT}]" \
   && "$(role_field bound_service_account_namespaces)" == "[${NAMESPACE}]" \
   && "$(role_field token_policies)" == "[${VAULT_POLICY}]" ]]; then
  log "role ${role_path}: up to date"
else
  vault write "${role_path}" \
    bound_service_account_names="${SERVICE_ACCOUNT}" \
    bound_service_account_namespaces="${NAMESPACE}" \
    token_policies="${VAULT_POLICY}" \
    token_ttl="${TOKEN_TTL}" \
    token_max_ttl="${TOKEN_MAX_TTL}" > /dev/null
  log "role ${role_path}: written (service account ${NAMESPACE}/${SERVICE_ACCOUNT})"
fi

if ((${#missing[@]} > 0)); then
  for item in "${missing[@]}"; do log "MISSING ${KV_MOUNT}/${SHARED_PATH}: ${item}"; done
  die "${#missing[@]} shared secret(s) missing: the worker's Vault agent cannot render its files"
fi
log "done"
