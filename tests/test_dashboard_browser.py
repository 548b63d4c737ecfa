"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against the
app served over HTTP with a seeded database. Install with ``scripts/install-browser``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.events_stream import publish
from tests.seed import seed, task

# Debian's chromium where it exists (this machine kind, installed by scripts/install-browser);
# elsewhere (Ubuntu CI runners, where apt's chromium is a snap stub) Playwright's own build.
CHROMIUM = os.environ.get("FLEET_CHROMIUM") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="run scripts/install-browser")


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def dashboard_url(fleet_app, fleet_http, db_conn):
    """The seeded dashboard; streams beat every second so closed pages free their thread fast."""
    fleet_app.config["FLEET_SSE_HEARTBEAT"] = 1
    seed(db_conn)
    return f"{fleet_http.url}/dashboard"


def test_dashboard_shows_state_and_updates_live(browser, dashboard_url, db_conn):
    """Progress, agents, ready work, merge queue, evidence and the burndown render; a published
    event shows in the live log and the panels re-render with the new state."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(dashboard_url)

    expect = sync_api.expect
    expect(page.locator("#live-status")).to_have_text("live", timeout=5000)
    expect(page.locator("#progress article[data-repo='octo/widgets'] h3")).to_have_text("octo/widgets")
    expect(page.locator("#progress tr.epic")).to_contain_text("Foundation")
    expect(page.locator("#progress svg.chart polyline.remaining")).to_have_count(1)
    expect(page.locator("#agents tr[data-agent='bot-a']")).to_contain_text("octo/widgets#4")
    expect(page.locator("#ready li.task")).to_have_count(1)
    expect(page.locator("#ready li.task")).to_contain_text("Parser")
    expect(page.locator("#queue li.entry").first).to_contain_text("#11")
    expect(page.locator("#evidence")).to_contain_text("issues.opened")
    # Loopback without a token is unauthenticated: the private repository is nowhere on the page.
    assert "octo/secret" not in page.content()

    task(db_conn, 8, "Fresh task", estimate_hours=2)
    assert publish("task.opened", "octo/widgets", {"number": 8})
    expect(page.locator("#event-log li.event").first).to_contain_text("task.opened octo/widgets#8")
    expect(page.locator("#ready li.task")).to_have_count(2, timeout=5000)
    expect(page.locator("#ready")).to_contain_text("Fresh task")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert problems == [], problems  # includes any Content-Security-Policy violation
    page.close()

