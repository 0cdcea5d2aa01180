"""Debian packages that tests need (pdftoppm, …), installed on first use when missing.

A fresh CI machine has only what the project's files install, so a test that shells out to a
tool asks for its package here instead of assuming it: `ensure_debian_packages(["poppler-utils"],
binaries=["pdftoppm"])` does nothing when the tools are there and runs `apt-get install -y`
otherwise (`apt-get update` first if the package lists are empty or stale).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable


def _installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip().endswith("installed")


def ensure_debian_packages(packages: Iterable[str], *, binaries: Iterable[str] = ()) -> None:
    """Install the missing ones among `packages` (all of them if a `binaries` is not on PATH)."""
    packages = list(packages)
    wanted_binaries = list(binaries)
    if wanted_binaries:
        missing = packages if any(shutil.which(b) is None for b in wanted_binaries) else []
    else:
        missing = [p for p in packages if not _installed(p)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"Debian packages needed by the tests and no apt-get: {missing}")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise RuntimeError(f"Install as root first: apt-get install -y {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    still_missing = [b for b in wanted_binaries if shutil.which(b) is None]
    if still_missing:
        raise RuntimeError(f"{missing} installed but {still_missing} still not on PATH")
