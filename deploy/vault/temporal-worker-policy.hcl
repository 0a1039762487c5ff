# Vault policy "temporal-worker-py" (not the original worker's "temporal-worker"): read exactly the KV v2 secrets the worker's Vault agent renders.
# Paths are the chart's vault.files[].path (deploy/helm/values-hosted.yaml); tests/deploy/test_vault.py
# checks the two lists agree. setup.sh moves them under KV_PREFIX for staging (alga-psa-staging). No wildcard, no list, no write: the worker never writes to Vault.

# Secrets the worker shares with nm-store only: internal_api_shared_secret (X-Internal-Secret) and
# temporal_webhook_secret (the HMAC key of X-Temporal-Signature on the checkout callback).
path "secret/data/alga-psa/temporal-worker" {
  capabilities = ["read"]
}

# Secrets shared with the Alga PSA web app: nextauth_secret (password pepper), postgres_password,
# db_password_server, resend_api_key, stripe_secret_key.
path "secret/data/alga-psa/shared" {
  capabilities = ["read"]
}
