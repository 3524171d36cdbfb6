"""Debian's chromium, headless, driven by Playwright with that executable (Playwright's own
browser download is never used), and what a user does in JupyterLab with it.  Shared by the
browser tests: tests/test_browser.py, test_asleep_page.py, test_asleep_flow.py."""

from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `playwright install` is never run
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def playwright_or_skip():
    """playwright.sync_api, or the test is skipped saying what is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="Playwright is missing (pip install playwright)")


@contextmanager
def chromium_tab(sync_api, extra_args: tuple[str, ...] = ()):
    """One tab of a fresh headless chromium, closed with its browser on leaving."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def kernel_status(page):
    """The status bar's "Python 3 (ipykernel) | Idle": the kernel is started and connected."""
    return page.locator('.jp-StatusBar-TextItem[title^="Change kernel"]')


def open_new_notebook(page):
    """The launcher's first Notebook card, as a user clicks it; the notebook panel it opens."""
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def run_cell(page, notebook, code: str) -> None:
    """Types into the last cell and runs it with Shift+Enter, as a user does."""
    notebook.locator(".jp-CodeCell").last.locator(".cm-content").click()
    page.keyboard.type(code)
    page.keyboard.press("Shift+Enter")


def dismiss_connection_dialogs(page) -> None:
    """JupyterLab may have said "Server Connection Error" while the server was away; a user
    clicks Dismiss.  (A dialog still open would swallow the keys typed into the cell.)"""
    dialog = page.locator(".jp-Dialog")
    while dialog.count():
        dialog.first.locator("button").last.click()
