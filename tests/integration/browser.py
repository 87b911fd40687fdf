"""Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright
(never a downloaded browser), and screenshots for the docs."""

from __future__ import annotations

import os
import shutil

from .hub import REPO

CHROMIUM = "/usr/bin/chromium"
#: as root, in a sandbox with no network but loopback
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / ".test-artifacts"
#: Set HPCSPAWNER_UPDATE_SCREENSHOTS=1 to refresh the docs' screenshots from a test run.
SCREENSHOTS = REPO / "docs" / "_static" / "screenshots"


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def screenshot(page, name: str) -> None:
    """Save what the page shows to .test-artifacts/ (and to the docs when asked to)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    if os.environ.get("HPCSPAWNER_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / name, SCREENSHOTS / name)
