"""deploy/vault: the policy grants read on exactly the chart's Vault paths, and setup.sh is
idempotent, strict, shellcheck-clean and never exposes a secret value.

Why a fake `vault` CLI: there is no Vault server here, and what matters about the script is the
sequence of CLI calls it makes (check before create; values through stdin, never argv or output),
which a recording fake shows exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helm_support import HELM_DIR, REPO_ROOT, load_yaml, tool_next_to_python

from alga_worker.payload_codec import PayloadKeys

VAULT_DIR = REPO_ROOT / "deploy" / "vault"
SETUP = VAULT_DIR / "setup.sh"
POLICY = VAULT_DIR / "temporal-worker-policy.hcl"

SHARED_FROM_ENV = {
    "NEXTAUTH_SECRET": "pepper-from-env-Secret1",
    "DB_PASSWORD_ADMIN": "admin-pw-Secret2",
    "DB_PASSWORD_SERVER": "server-pw-Secret3",
    "RESEND_API_KEY": "re_Secret4",
    "STRIPE_SECRET_KEY": "sk_live_Secret5",
}

FAKE_VAULT = textwrap.dedent('''\
    """Recording stand-in for the vault CLI: the subset deploy/vault/setup.sh uses, state in JSON."""
    import json, os, sys
    state_path = os.environ["FAKE_VAULT_STATE"]
    with open(state_path) as fh:
        state = json.load(fh)
    args = sys.argv[1:]
    with open(os.environ["FAKE_VAULT_LOG"], "a") as fh:
        fh.write(json.dumps(args) + "\\n")
    def save():
        with open(state_path, "w") as fh:
            json.dump(state, fh)
    def opts(rest):
        flags = {a.split("=", 1)[0].lstrip("-"): a.split("=", 1)[1] for a in rest if a.startswith("-")}
        return flags, [a for a in rest if not a.startswith("-")]
    cmd = args[:2]
    if cmd == ["token", "lookup"]:
        sys.exit(0 if state["logged_in"] else 2)
    if cmd == ["auth", "list"]:
        print("Path           Type          Accessor")
        print("----           ----          --------")
        print("token/         token         auth_token_1")
        for path in state["auth"]:
            print(f"{path}/    kubernetes    auth_kubernetes_2")
        sys.exit(0)
    if args[0] == "kv":
        flags, pos = opts(args[2:])
        path = f"{flags['mount']}/{pos[0]}"
        secret = state["kv"].get(path)
        if args[1] == "get":
            if secret is None or ("field" in flags and flags["field"] not in secret):
                sys.exit(2)
            if "field" in flags:
                sys.stdout.write(secret[flags["field"]])
            sys.exit(0)
        if args[1] in ("put", "patch"):
            if args[1] == "patch" and secret is None:
                sys.exit(2)
            new = {} if args[1] == "put" else dict(secret)
            for pair in pos[1:]:
                key, value = pair.split("=", 1)
                new[key] = sys.stdin.read() if value == "-" else value
            state["kv"][path] = new
            save()
            sys.exit(0)
    if cmd == ["policy", "read"]:
        if args[2] not in state["policies"]:
            sys.exit(2)
        sys.stdout.write(state["policies"][args[2]])
        sys.exit(0)
    if cmd == ["policy", "write"]:
        with open(args[3]) as fh:
            state["policies"][args[2]] = fh.read()
        save()
        sys.exit(0)
    if args[0] == "read":
        flags, pos = opts(args[1:])
        role = state["roles"].get(pos[0])
        if role is None:
            sys.exit(2)
        value = role[flags["field"]]
        is_list = flags["field"].startswith(("bound", "token_pol"))
        print("[" + " ".join(value.split(",")) + "]" if is_list else value)
        sys.exit(0)
    if args[0] == "write":
        state["roles"][args[1]] = dict(a.split("=", 1) for a in args[2:])
        save()
        sys.exit(0)
    sys.stderr.write("fake vault: unsupported " + " ".join(args) + "\\n")
    sys.exit(64)
''')


class FakeVault:
    """A temp dir with the fake CLI on PATH, its state and its call log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bin_dir = root / "bin"
        bin_dir.mkdir()
        script = bin_dir / "vault"
        script.write_text(f"#!{sys.executable}\n{FAKE_VAULT}", encoding="utf-8")
        script.chmod(0o755)
        self.state_path = root / "state.json"
        self.log_path = root / "calls.log"
        self.state = {"logged_in": True, "auth": ["kubernetes"], "kv": {}, "policies": {}, "roles": {}}
        self.save()
        self.path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"

    def save(self) -> None:
        """Write the state the fake reads."""
        self.state_path.write_text(json.dumps(self.state), encoding="utf-8")

    def load(self) -> dict[str, Any]:
        """The state after a run."""
        return dict(json.loads(self.state_path.read_text(encoding="utf-8")))

    def calls(self) -> list[list[str]]:
        """Every CLI invocation so far."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines()]

    def run(self, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run setup.sh against the fake."""
        env = {
            "PATH": self.path,
            "FAKE_VAULT_STATE": str(self.state_path),
            "FAKE_VAULT_LOG": str(self.log_path),
            **(extra_env or {}),
        }
        return subprocess.run(
            ["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60, check=False
        )


@pytest.fixture
def fake_vault(tmp_path: Path) -> FakeVault:
    """A fresh, empty fake Vault."""
    return FakeVault(tmp_path)


def test_policy_grants_read_on_exactly_the_chart_paths() -> None:
    """The policy's paths equal the hosted chart's Vault paths; read only; no wildcards."""
    text = POLICY.read_text(encoding="utf-8")
    blocks = re.findall(r'path\s+"([^"]+)"\s*\{([^}]*)\}', text)
    hosted = load_yaml(HELM_DIR / "values-hosted.yaml")
    chart_paths = {f["path"] for f in hosted["vault"]["files"]}
    assert (
        {path for path, _ in blocks}
        == chart_paths
        == {"secret/data/alga-psa/temporal-worker", "secret/data/alga-psa/shared"}
    )
    for path, body in blocks:
        assert "*" not in path and "+" not in path
        assert re.search(r'capabilities\s*=\s*\["read"\]', body), path
    assert len(blocks) == len(re.findall(r"^\s*path\s", text, re.MULTILINE)), "unparsed path block"


def test_setup_script_is_strict_and_shellcheck_clean() -> None:
    """bash with `set -euo pipefail`, no tracing, shellcheck-clean."""
    for script in sorted(VAULT_DIR.glob("*.sh")):
        text = script.read_text(encoding="utf-8")
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "set -euo pipefail" in text
        assert "set -x" not in text
    proc = subprocess.run(
        [str(tool_next_to_python("shellcheck")), *map(str, sorted(VAULT_DIR.glob("*.sh")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_setup_creates_everything_then_is_idempotent(fake_vault: FakeVault) -> None:
    """First run creates secret, policy and role; a second run changes nothing; no value leaks."""
    first = fake_vault.run(SHARED_FROM_ENV)
    assert first.returncode == 0, first.stderr
    state = fake_vault.load()
    worker = state["kv"]["secret/alga-psa/temporal-worker"]
    internal, webhook = worker["internal_api_shared_secret"], worker["temporal_webhook_secret"]
    assert set(worker) == {"internal_api_shared_secret", "temporal_webhook_secret", "payload_keys"}
    for generated in (internal, webhook):
        assert re.fullmatch(r"[A-Za-z0-9_-]{64}", generated), "48 random bytes, base64url"
    assert internal != webhook
    # One new payload key, in the form the worker reads (PAYLOAD_KEYS).
    payload_keys = worker["payload_keys"]
    assert re.fullmatch(r"k\d{6}:[A-Za-z0-9+/]{43}=", payload_keys), "k<YYYYMM>:<base64 of 32 bytes>"
    assert PayloadKeys.parse(payload_keys).active_key_id == payload_keys.split(":")[0]
    assert state["kv"]["secret/alga-psa/shared"] == {
        "nextauth_secret": SHARED_FROM_ENV["NEXTAUTH_SECRET"],
        "postgres_password": SHARED_FROM_ENV["DB_PASSWORD_ADMIN"],
        "db_password_server": SHARED_FROM_ENV["DB_PASSWORD_SERVER"],
        "resend_api_key": SHARED_FROM_ENV["RESEND_API_KEY"],
        "stripe_secret_key": SHARED_FROM_ENV["STRIPE_SECRET_KEY"],
    }
    assert state["policies"]["temporal-worker-py"] == POLICY.read_text(encoding="utf-8")
    role = state["roles"]["auth/kubernetes/role/temporal-worker-py"]
    assert role["bound_service_account_names"] == "temporal-worker-py"
    assert role["bound_service_account_namespaces"] == "msp"
    assert role["token_policies"] == "temporal-worker-py"
    assert "temporal-worker" not in state["policies"], "the original worker's policy must not be touched"

    secrets = [internal, webhook, payload_keys.split(":")[1], *SHARED_FROM_ENV.values()]
    calls_text = json.dumps(fake_vault.calls())
    for value in secrets:
        assert value not in first.stdout + first.stderr, "a secret value was printed"
        assert value not in calls_text, "a secret value was passed on a command line"

    first_calls = len(fake_vault.calls())
    second = fake_vault.run(SHARED_FROM_ENV)
    assert second.returncode == 0, second.stderr
    new_calls = fake_vault.calls()[first_calls:]
    writes = [
        c
        for c in new_calls
        if c[:2] in (["kv", "put"], ["kv", "patch"], ["policy", "write"]) or c[0] == "write"
    ]
    assert writes == [], writes
    assert fake_vault.load() == state
    for value in secrets:
        assert value not in second.stdout + second.stderr


def test_setup_never_invents_shared_secrets(fake_vault: FakeVault) -> None:
    """Missing shared keys and no env values: fail naming them, after setting up everything else."""
    result = fake_vault.run()
    assert result.returncode != 0
    for key in ("nextauth_secret", "postgres_password", "db_password_server", "resend_api_key",
                "stripe_secret_key"):
        assert key in result.stderr
    state = fake_vault.load()
    assert "secret/alga-psa/shared" not in state["kv"]
    # The worker's own secrets are its to create (the payload key too): only shared ones are never invented.
    assert set(state["kv"]["secret/alga-psa/temporal-worker"]) == {"internal_api_shared_secret",
                                                                    "temporal_webhook_secret", "payload_keys"}
    assert "temporal-worker-py" in state["policies"]
    assert "auth/kubernetes/role/temporal-worker-py" in state["roles"]


def test_setup_keeps_existing_values_and_patches_missing_keys(fake_vault: FakeVault) -> None:
    """Existing keys are kept (no rotation by accident); a missing key is added with a patch."""
    fake_vault.state["kv"] = {
        "secret/alga-psa/temporal-worker": {"internal_api_shared_secret": "existing-internal"},
        "secret/alga-psa/shared": {"nextauth_secret": "web-app-pepper", "alga_auth_key": "untouched"},
    }
    fake_vault.save()
    result = fake_vault.run(SHARED_FROM_ENV)
    assert result.returncode == 0, result.stderr
    state = fake_vault.load()
    worker = state["kv"]["secret/alga-psa/temporal-worker"]
    assert worker["internal_api_shared_secret"] == "existing-internal"
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", worker["temporal_webhook_secret"]), "missing key added"
    shared = state["kv"]["secret/alga-psa/shared"]
    assert shared["nextauth_secret"] == "web-app-pepper"
    assert shared["alga_auth_key"] == "untouched", "the original worker's key is left as it is"
    assert shared["resend_api_key"] == SHARED_FROM_ENV["RESEND_API_KEY"]


def test_setup_requires_login_and_kubernetes_auth(fake_vault: FakeVault) -> None:
    """Clear failures before any write when not logged in or the auth method is missing."""
    fake_vault.state["auth"] = []
    fake_vault.save()
    result = fake_vault.run(SHARED_FROM_ENV)
    assert result.returncode != 0 and "vault auth enable" in result.stderr
    fake_vault.state["logged_in"] = False
    fake_vault.save()
    result = fake_vault.run(SHARED_FROM_ENV)
    assert result.returncode != 0 and "not logged in" in result.stderr
    assert fake_vault.load()["kv"] == {}


def test_setup_takes_nm_store_secrets_from_the_environment_when_given(fake_vault: FakeVault) -> None:
    """An nm-store that already holds its secrets keeps them: the values come from the environment
    (through stdin, never printed), and an existing Vault value is still never replaced."""
    given = {"INTERNAL_API_SHARED_SECRET": "nm-internal-Secret6", "TEMPORAL_WEBHOOK_SECRET": "nm-webhook-Secret7",
             "PAYLOAD_KEYS": "k2026:" + "A" * 43 + "="}
    result = fake_vault.run({**SHARED_FROM_ENV, **given})
    assert result.returncode == 0, result.stderr
    assert fake_vault.load()["kv"]["secret/alga-psa/temporal-worker"] == {
        "internal_api_shared_secret": given["INTERNAL_API_SHARED_SECRET"],
        "temporal_webhook_secret": given["TEMPORAL_WEBHOOK_SECRET"],
        "payload_keys": given["PAYLOAD_KEYS"],
    }
    calls_text = json.dumps(fake_vault.calls())
    for value in given.values():
        assert value not in result.stdout + result.stderr and value not in calls_text
    again = fake_vault.run({**SHARED_FROM_ENV, "TEMPORAL_WEBHOOK_SECRET": "a-different-value-8"})
    assert again.returncode == 0, again.stderr
    assert fake_vault.load()["kv"]["secret/alga-psa/temporal-worker"]["temporal_webhook_secret"] == given[
        "TEMPORAL_WEBHOOK_SECRET"]


def test_setup_names_match_the_chart_and_never_the_original_worker(fake_vault: FakeVault) -> None:
    """The role, policy and service account are the hosted chart's (temporal-worker-py), never the
    original TypeScript worker's role `temporal-worker`; the pepper key is the one hosted reads."""
    hosted = load_yaml(HELM_DIR / "values-hosted.yaml")
    result = fake_vault.run(SHARED_FROM_ENV)
    assert result.returncode == 0, result.stderr
    state = fake_vault.load()
    assert set(state["roles"]) == {f"auth/kubernetes/role/{hosted['vault']['role']}"}
    assert hosted["vault"]["role"] == "temporal-worker-py"
    [role] = state["roles"].values()
    assert role["bound_service_account_names"] == "temporal-worker-py"  # the chart's fullname for that release
    shared = next(f for f in hosted["vault"]["files"] if f["name"] == "shared")
    pepper_key = shared["env"][hosted["config"]["PASSWORD_PEPPER_VARIABLE"]]
    assert pepper_key in state["kv"]["secret/alga-psa/shared"]


def test_setup_for_staging_uses_its_own_paths_role_and_namespace(fake_vault: FakeVault) -> None:
    """KV_PREFIX moves the secrets and the policy's paths; the staging values read exactly those."""
    staging = load_yaml(HELM_DIR / "values-staging.yaml")
    env = {**SHARED_FROM_ENV, "KV_PREFIX": "alga-psa-staging", "NAMESPACE": staging["requiredNamespace"],
           "VAULT_ROLE": staging["vault"]["role"], "VAULT_POLICY": staging["vault"]["role"]}
    result = fake_vault.run(env)
    assert result.returncode == 0, result.stderr
    state = fake_vault.load()
    policy = state["policies"][staging["vault"]["role"]]
    paths = set(re.findall(r'path\s+"([^"]+)"', policy))
    assert paths == {f["path"] for f in staging["vault"]["files"]}
    assert {p.replace("/data/", "/", 1) for p in paths} == set(state["kv"])
    role = state["roles"][f"auth/kubernetes/role/{staging['vault']['role']}"]
    assert role["bound_service_account_namespaces"] == "msp-staging"
    again = fake_vault.run(env)
    assert again.returncode == 0 and "written" not in again.stderr, again.stderr
