"""Full-page screenshots at 1366×768 of every page for every role, on the demo's data, saved as
artifacts to look at: under $WORKBENCH_SCREENSHOT_DIR when set, else the test's tmp folder.
Every page must render without an error box; the pictures are for a person to judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_browser import APP_IDLE, _serve, browser  # noqa: F401 (browser is a fixture)

from workbench.config import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

from playwright.sync_api import Browser, Page, expect  # noqa: E402

PAGES = [
    "review",
    "lead",
    "adjudication",
    "gold",
    "report",
    "engineer",
    "evaluation",
    "admin",
    "settings",
]
# The demo's users, one per role.
ROLES = {"alice": "reviewer", "lena": "lead", "eddie": "engineer", "admin": "admin"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[dict]:  # noqa: F811
    home = tmp_path_factory.mktemp("screens") / "home"
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    env.pop("WORKBENCH_DATABASE_URL", None)
    exe = Path(sys.executable).parent / "workbench"
    subprocess.run([str(exe), "demo", "--no-serve"], env=env, check=True, capture_output=True)
    settings = Settings(home=home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_HOME", str(home))
        mp.delenv("WORKBENCH_DATABASE_URL", raising=False)
        with _serve(settings, browser) as base:
            yield {"url": base, "logins": json.loads((home / "demo-credentials.json").read_text())}


def _full_page(page: Page, path: Path) -> None:
    """Streamlit scrolls inside its main block: grow the window to it, shoot, shrink back."""
    expect(page.locator(APP_IDLE)).to_have_count(1)
    measure = (
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], section')]"
        ".map((e) => e.scrollHeight), 768)"
    )
    height = 768
    for _ in range(4):  # a taller window lays the page out again (charts, wide tables)
        wanted = min(int(page.evaluate(measure)), 12000)
        if wanted <= height:
            break
        height = wanted
        page.set_viewport_size({"width": 1366, "height": height})
        page.wait_for_timeout(500)  # no event says when the re-layout is done
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1366, "height": 768})


def test_every_page_for_every_role(demo: dict, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    out = Path(os.environ.get("WORKBENCH_SCREENSHOT_DIR") or tmp_path / "screens")
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    for name, role in ROLES.items():
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(demo["url"])
        page.locator("input[type=text]").fill(name)
        page.locator("input[type=password]").fill(demo["logins"][name])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_text(f"{name} ({role})", exact=True)).to_be_visible()
        for view in PAGES:
            page.goto(f"{demo['url']}/{view}")
            expect(page.get_by_text(f"{name} ({role})", exact=True)).to_be_visible()
            assert page.url.endswith(f"/{view}")  # each page answers at its own address
            expect(page.locator("h1").first).to_be_visible()  # the page's own run has drawn
            assert page.get_by_text("Page not found").count() == 0
            path = out / f"{role}-{view}.png"
            _full_page(page, path)
            assert page.locator('[data-testid="stException"]').count() == 0, (role, view)
            shots.append(path)
        context.close()
    assert all(p.stat().st_size > 0 for p in shots)
    print(f"{len(shots)} screenshots in {out}")
