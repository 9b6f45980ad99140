"""The DSA report page in a real browser: a lead sees the figures and charts of the golden
fixture's period (no raw `None`), a reviewer has no such page. With WORKBENCH_SCREENSHOT_DIR
set, the page is saved there at 1366x768 for a person to look at."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import join_every_project
from test_browser import APP_IDLE, CHROMIUM, PW, _login, _serve
from test_dsa_report import PERIOD, build_fixture

from workbench.config import Settings
from workbench.db.database import open_database
from workbench.db.models import Role
from workbench.services.audit import Actor
from workbench.services.users import add_user

pytestmark = pytest.mark.browser

from playwright.sync_api import Browser, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def test_a_lead_sees_the_report_and_a_reviewer_does_not(
    tmp_path: Path, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'wb.db'}")
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", settings.url)
    monkeypatch.setenv("WORKBENCH_PROJECT", "dsa")
    db = open_database(settings)
    try:
        scores = tmp_path / "model"
        scores.mkdir()
        with db.sessions.begin() as s:
            build_fixture(s, scores)
            join_every_project(s, add_user(s, "lead1", Role.lead, Actor.system(), password=PW))
            join_every_project(s, add_user(s, "rev1", Role.reviewer, Actor.system(), password=PW))
    finally:
        db.dispose()
    with _serve(settings, browser) as base:
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        _login(page, base, "lead1")
        page.get_by_role("link", name="DSA report").click()
        expect(page.get_by_text("DSA transparency report")).to_be_visible()
        period = page.get_by_role("textbox", name="Reporting period")
        # The page opens on the months that hold decisions (October and the late November one).
        expect(period).to_have_value("2026-10-01/2026-11-30")
        period.fill(PERIOD)
        period.press("Enter")
        metrics = page.locator('[data-testid="stMetric"]')
        # October alone: 15 measures (the golden report's figure), not 16 with November's.
        expect(metrics.filter(has_text="Own-initiative measures")).to_contain_text("15")
        expect(metrics.filter(has_text="Complaints")).to_contain_text("2")
        expect(metrics.filter(has_text="Share reversed")).to_contain_text("0.5000")
        expect(page.locator(".vega-embed").first).to_be_visible()
        assert page.locator(".vega-embed").count() == 5  # four breakdowns and the accuracy
        body = page.locator("section.main, [data-testid='stMain']").first.inner_text()
        assert "None" not in body and "nan" not in body.split()
        expect(page.locator(APP_IDLE)).to_have_count(1)
        shots = os.environ.get("WORKBENCH_SCREENSHOT_DIR")
        if shots:
            page.screenshot(path=str(Path(shots) / "dsa_report_page.png"))
            page.get_by_text("Automated means: accuracy on").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            page.screenshot(path=str(Path(shots) / "dsa_report_page_accuracy.png"))
        ctx.close()
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        _login(page, base, "rev1")
        expect(page.get_by_role("link", name="DSA report")).to_have_count(0)
        ctx.close()
