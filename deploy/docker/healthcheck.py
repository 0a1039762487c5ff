"""Container HEALTHCHECK: GET /healthz on the worker's health port; exit 0 only on HTTP 200.

Why a script and not curl: the slim base has no curl, and adding it grows the attack surface for one
probe. Standard library only, so it runs with ``python -I`` (isolated: ignores PYTHON* variables and
the working directory).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe liveness; any error (refused, timeout, non-200) is unhealthy."""
    port = os.environ.get("HEALTH_CHECK_PORT", "8080") or "8080"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
