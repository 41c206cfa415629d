"""Headless Chromium (the distribution's package) for tests that look at a rendered page.

Missing locally: the test skips with a reason; in CI (CI=true) it fails instead, since
CI installs Chromium (.ci/run) and a skipped browser test would pass unseen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Nothing but the page: no network of its own, no profile, no first-run or sync work.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    """The browser's path, or skip (fail in CI) saying how to get one."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    reason = "headless Chromium is not installed (Debian/Ubuntu: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests, but {reason}", pytrace=False)
    pytest.skip(reason)


def _run(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="plc-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args, url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if done.returncode != 0:
        raise AssertionError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(page: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran (``fragment``: the URL's #part)."""
    return _run(page.resolve().as_uri() + fragment, "--dump-dom")


def screenshot(page: Path, target: Path, *, width: int, height: int, fragment: str = "") -> Path:
    _run(
        page.resolve().as_uri() + fragment,
        f"--screenshot={target}",
        f"--window-size={width},{height}",
    )
    if not target.exists():
        raise AssertionError(f"chromium wrote no screenshot to {target}")
    return target
