"""The console in headless Chromium (Debian's `chromium`, driven by Playwright; .ci/run installs it).

After the scripted migrations of consolefixtures.py, a browser opens the timeline, a migration,
the schema and the drift page, and checks what a person would see there. Screenshots of each
page are kept under the test session's tmp path (`console-screenshots/`); set
CONSOLE_SCREENSHOTS=DIR to also write them to DIR (the README's images come from there:
`CONSOLE_SCREENSHOTS=docs scripts/test -k browser`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.consolefixtures import (
    HOSTILE_COMMENT,
    HOSTILE_TABLE,
    Served,
    console_db_fixture,  # noqa: F401  (fixtures, by their names)
    console_fixture,  # noqa: F401
    scripted_fixture,  # noqa: F401
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No sandbox: the suite runs as root in CI, where Chromium refuses its sandbox. Nothing is
# fetched from the network: no component updates, no sync, no first-run pages.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def browser(console: Served) -> Iterator[Browser]:
    """Started after the scripted history: Playwright's sync API keeps an event loop running in
    this thread, where the drift CLI's asyncio.run() cannot start one."""
    del console
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, java_script_enabled=True)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    errors: list[str] = []
    opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield opened
    context.close()
    assert dialogs == [], "a script ran: " + repr(dialogs)  # no alert() from any hostile text
    assert errors == [], errors  # no refused inline script or style either


def screenshot(page: Page, shots: Path, name: str) -> None:
    path = shots / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    extra = os.environ.get("CONSOLE_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def test_timeline_in_the_browser(page: Page, console: Served, shots: Path) -> None:
    p = page
    p.goto(console.base + "/console/")
    rows = p.locator("table#timeline tbody tr")
    assert rows.count() == 6
    versions = p.locator("table#timeline td.version").all_inner_texts()
    assert versions == ["2", "c-hostile", "c3a1b2", "c-alembic-table", "c-v2", "c-v1"]
    assert "reachable" in p.locator("#health").inner_text()
    # The stylesheet applied (the CSP allows it and nothing inline): the table has a white background.
    background = p.locator("table#timeline").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(255, 255, 255)"
    screenshot(p, shots, "timeline")
    p.select_option("select[name=user]", "alice")
    p.fill("input[name=since]", "2999-01-01")
    p.click("#filters button[type=submit]")
    p.wait_for_url("**/console/?*since=2999-01-01*")
    assert "No migrations recorded match these filters." in p.inner_text("main")


def test_migration_page_in_the_browser(page: Page, console: Served, shots: Path) -> None:
    p = page
    p.goto(console.base + "/console/")
    p.click("table#timeline td.version >> text=c-hostile")
    p.wait_for_url("**/console/migrations/5")
    assert p.inner_text("h1") == "Migration 5"
    statement = p.locator("#statements pre").first.inner_text()
    assert HOSTILE_TABLE in statement and HOSTILE_COMMENT in statement
    assert p.locator("script, img, textarea").count() == 0
    assert HOSTILE_TABLE in p.inner_text("#objects")  # its definition, rendered as text
    screenshot(p, shots, "migration")


def test_schema_page_in_the_browser(page: Page, console: Served, shots: Path) -> None:
    p = page
    p.goto(console.base + "/console/schema")
    assert "the latest" in p.inner_text("p.summary")
    assert "public.items" in p.inner_text("table#electrified")
    items = p.locator('section.object[data-name="public.items"]')
    assert "electrified" in items.locator(".badge").inner_text()
    assert "price bigint" in items.locator("pre").inner_text()
    screenshot(p, shots, "schema")
    p.fill("input[name=from]", "c-v1")
    p.fill("input[name=to]", "c-hostile")
    p.click("text=Compare")
    p.wait_for_url("**/console/schema?from=c-v1&to=c-hostile")
    assert "From migration 1 (c-v1) to 5 (c-hostile)" in p.inner_text("p.summary")
    assert "column added: price bigint" in p.inner_text("#diff")
    screenshot(p, shots, "diff")


def test_drift_page_in_the_browser(page: Page, console: Served, shots: Path) -> None:
    p = page
    p.goto(console.base + "/console/drift")
    assert p.inner_text("h1") == "Drift: 1 open"
    assert p.locator("h2.severity").all_inner_texts() == ["Critical (1)"]
    row = p.locator("table.drift.critical > tbody > tr")
    assert row.count() == 1
    assert "public.items.sneaky" in row.inner_text() and "electrified" in row.inner_text()
    assert "sneaky" in p.locator("table.drift td.actual").all_inner_texts()
    assert "carol" in p.inner_text("table#accepted")
    screenshot(p, shots, "drift")
