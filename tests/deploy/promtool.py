"""promtool, Prometheus' rule checker, from the Debian package `prometheus`, unpacked without installing.

Why this way: `apt-get install prometheus` would install and start a Prometheus service on the test
machine. `apt-get download` fetches the same signed .deb through the machine's apt sources, and
`dpkg-deb -x` unpacks it into a cache directory: nothing is installed, no service runs, and the next
session reuses the binary. On a fresh machine whose apt lists were never fetched, the download fails
once; then `apt-get update` runs once and the download is retried.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "prometheus"
BINARY = Path("usr") / "bin" / "promtool"


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def _works(path: Path) -> bool:
    return path.is_file() and _run([str(path), "--version"], timeout=30).returncode == 0


def _download(into: Path) -> Path:
    """The package's .deb in ``into``; refreshes the apt lists once if the first attempt fails."""
    for tool in ("apt-get", "dpkg-deb"):
        assert shutil.which(tool), f"{tool} not found: promtool comes from the Debian package {PACKAGE}"
    download = ["apt-get", "download", PACKAGE]
    result = _run(download, cwd=into)
    if result.returncode != 0:
        update = _run(["apt-get", "update"])
        assert update.returncode == 0, f"apt-get update failed:\n{update.stdout[-2000:]}{update.stderr[-2000:]}"
        result = _run(download, cwd=into)
    assert result.returncode == 0, f"apt-get download {PACKAGE} failed:\n{result.stderr[-4000:]}"
    debs = sorted(into.glob(f"{PACKAGE}_*.deb"))
    assert len(debs) == 1, f"expected one {PACKAGE} .deb in {into}, found {debs}"
    return debs[0]


def obtain(cache_dir: Path) -> Path:
    """``<cache_dir>/promtool``, fetched and unpacked on first use. Only the promtool binary is kept
    (not the Prometheus server beside it in the package); it is unpacked in a temporary directory and
    moved into place at the end, so an interrupted session never leaves a broken binary behind."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / "promtool"
    if _works(target):
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="fetch-") as tmp:
        work = Path(tmp)
        deb = _download(work)
        unpacked = work / "root"
        result = _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        assert result.returncode == 0, f"dpkg-deb -x {deb.name} failed:\n{result.stderr[-4000:]}"
        assert _works(unpacked / BINARY), f"{deb.name} holds no working {BINARY}"
        (unpacked / BINARY).replace(target)
    return target


def run(promtool: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """promtool with ``args``; the caller asserts on the result (stdout and stderr kept for messages)."""
    return _run([str(promtool), *args], cwd=cwd, timeout=120)
