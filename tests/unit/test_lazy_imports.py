"""A worker loads the Stripe and Resend SDKs only when its settings use them.

Why: each SDK costs resident memory in every worker process (the Resend SDK brings `requests`; with
Stripe, about 7 MiB in all), and the worker's memory is one of issue 12's figures. Checked in a fresh
interpreter, because this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_PROBE = """
import json, sys
from alga_worker.cli import main  # the `alga-worker run` entry point and everything it imports
from alga_worker.runtime import worker
from alga_worker.activities.stripe import StripeActivities
from alga_worker.config import load_settings
from alga_worker.email.providers import build_email_sender

settings = load_settings(json.loads(sys.argv[1]))
sender = build_email_sender(settings)
StripeActivities(settings)
print(json.dumps({"sender": sender.name,
                  "loaded": sorted(m for m in ("stripe", "resend", "requests", "boto3") if m in sys.modules)}))
"""


def _loaded_after_building(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(env)], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return {"SECRETS_DIR": str(secrets), "DB_HOST": "db.internal", "ALGA_AUTH_KEY": "pepper-for-tests-0123456789",
            "EMAIL_OUTBOX_DIR": str(tmp_path / "outbox")}


def test_an_outbox_worker_without_stripe_loads_neither_sdk(base_env: dict[str, str]) -> None:
    result = _loaded_after_building({**base_env, "EMAIL_PROVIDER": "outbox"})
    assert result == {"sender": "outbox", "loaded": []}


def test_a_resend_worker_with_stripe_loads_both_sdks_when_it_builds_them(base_env: dict[str, str]) -> None:
    result = _loaded_after_building({**base_env, "EMAIL_PROVIDER": "resend", "RESEND_API_KEY": "re_test_123",
                                     "STRIPE_SECRET_KEY": "sk_test_123"})
    assert result == {"sender": "resend", "loaded": ["requests", "resend", "stripe"]}
