"""Headless Chromium, driven by Playwright: screenshots of the health page (and, later, of Airflow's UI).

The browser is Debian's ``chromium`` package (``make browser`` installs it), never one Playwright downloads: the
machines this runs on reach package registries only. Playwright's Python wheel brings its driver, not a browser.
Chromium starts with networking it would do on its own switched off, so it only ever loads what it is pointed at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from crm_pipeline.errors import BrowserMissingError

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_VARIABLE = "CRM_CHROMIUM"  # a Chromium binary to use instead of the one on PATH
CANDIDATES = ("chromium", "chromium-browser")
ARGS = [
    "--no-sandbox",  # as root (CI), Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> Path:
    """``$CRM_CHROMIUM``, else the first Chromium on PATH; a clear error when there is none."""
    configured = os.environ.get(CHROMIUM_VARIABLE, "").strip()
    if configured:
        if not Path(configured).is_file():
            raise BrowserMissingError(f"{CHROMIUM_VARIABLE}={configured}: no such file")
        return Path(configured)
    for name in CANDIDATES:
        if found := shutil.which(name):
            return Path(found)
    raise BrowserMissingError(
        "no Chromium found: run `make browser` (installs Debian's chromium package) or set "
        f"{CHROMIUM_VARIABLE} to a Chromium binary"
    )


@contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A fresh page in headless Chromium with an empty profile, closed afterwards."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    with tempfile.TemporaryDirectory(prefix="crm-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(executable),
            headless=True,
            args=ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def screenshot_file(html: Path, png: Path, width: int = 1280) -> Path:
    """A full-page PNG of a local HTML file."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with browser_page(width=width) as page:
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(png), full_page=True)
    return png
