# Vault policy "temporal-worker": read exactly the KV v2 secrets the worker's Vault agent renders.
# Paths are the chart's vault.files[].path (deploy/helm/values-hosted.yaml); tests/deploy/test_vault.py
# checks the two lists agree. No wildcard, no list, no write: the worker never writes to Vault.

# Worker-only secrets: internal_api_shared_secret (X-Internal-Secret sent to nm-store).
path "secret/data/alga-psa/temporal-worker" {
  capabilities = ["read"]
}

# Secrets shared with the Alga PSA web app: alga_auth_key (password pepper), postgres_password,
# db_password_server, resend_api_key.
path "secret/data/alga-psa/shared" {
  capabilities = ["read"]
}
