"""The review page in a real browser: Debian's Chromium driven by Playwright against a real
`workbench serve`. The core reviewer flow (keyboard labelling, submit, undo) runs on SQLite and on
Postgres, each on a server of its own; drafts surviving reloads, roles enforced by URL too, inert
user content and images blurred until clicked share one SQLite server for the module.

Nothing here waits a fixed time: each step waits for what it needs (an element, a script's state,
a row in the database), so a slow machine makes the tests slower, not red."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from builders import join_every_project, make_items, make_project
from PIL import Image
from sqlalchemy import select

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import (
    Item,
    Label,
    Lease,
    MediaAsset,
    Modality,
    ReviewDraft,
    Role,
    User,
    UserSession,
)
from workbench.services.audit import Actor
from workbench.services.auth import logout
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.users import add_user

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        raise RuntimeError("WORKBENCH_REQUIRE_BROWSER=1 but no `chromium` on PATH (apt install it)")
    pytest.skip(
        "no `chromium` on PATH: the browser tests need Debian's chromium", allow_module_level=True
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

# This 2-core machine can be slow to render the first page of a fresh server.
expect.set_options(timeout=20_000)
PW = "a long password"
XSS = (
    '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
    "![m](http://e/x.png) **bold**"
)
N_TEXT = 15
# Streamlit's own mark (its end-to-end tests wait for it) that no page run is under way.
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# The shortcuts listen once the script of a frame still on the page has taken them over. (The
# flag `__wbShortcutsInstalled` stays set after Streamlit removes that frame on another page, so
# right after coming back it does not say that keys work yet.)
SHORTCUTS_LIVE = """() => {
  const s = window.__wbShortcuts;
  return !!s && Array.from(document.querySelectorAll("iframe")).some(
    (f) => f.contentWindow === s.frame);
}"""
T = TypeVar("T")


def _wait_until(check: Callable[[], T], what: str, timeout_s: float = 20.0) -> T:
    """Poll `check` until it returns something truthy (returned); fail with `what` after the
    deadline. For conditions outside the page, such as a row the server writes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout_s:.0f} s for {what}")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _striped_png() -> bytes:
    img = Image.new("RGB", (240, 160), (220, 20, 20))
    for x in range(0, 240, 12):
        for y in range(160):
            img.putpixel((x, y), (20, 20, 220))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _seed(db: Database) -> None:
    """Projects, users and queued items, made through the services (as the CLI would)."""
    with db.sessions.begin() as s:
        p = make_project(s, "p")
        texts = [XSS] + [f"plain item number {n}" for n in range(1, N_TEXT)]
        items = make_items(s, p, texts)
        enqueue(s, p, [NewEntry(i.id, priority=-n) for n, i in enumerate(items)], Actor.system())
        pics = make_project(s, "pics")
        (img_item,) = make_items(s, pics, ["an image"], prefix="img")
        data = _striped_png()
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha[2:4]}/{sha}.png"
        (db.settings.media_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (db.settings.media_dir / rel).write_bytes(data)
        img_item.modalities = ["text", "image"]
        s.add(
            MediaAsset(
                item_id=img_item.id, modality=Modality.image, sha256=sha, mime_type="image/png",
                size_bytes=len(data), width=240, height=160, store_path=rel,
            )
        )  # fmt: skip
        enqueue(s, pics, [NewEntry(img_item.id)], Actor.system())
        for name, role in (
            ("alice", Role.reviewer),
            ("ivy", Role.reviewer),
            ("erin", Role.engineer),
            ("lena", Role.lead),
            ("ada", Role.admin),
        ):
            join_every_project(s, add_user(s, name, role, Actor.system(), password=PW))


def _healthy(base: str) -> bool:
    try:
        return bool(urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).status == 200)
    except OSError:
        return False


@contextmanager
def _serve(settings: Settings, browser: Browser) -> Iterator[str]:
    """`workbench serve` on the given home and database until the block ends; yields its URL
    once its login page has rendered."""
    port = _free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(settings.home),
           "WORKBENCH_DATABASE_URL": settings.url, "WORKBENCH_PROJECT": "p"}  # fmt: skip
    exe = Path(sys.executable).parent / "workbench"
    # A file, not a pipe nobody reads: a full pipe would block the server mid-test.
    log_path = settings.resolved_home / f"serve-{port}.log"
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--no-worker"],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    try:

        def up() -> bool:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"workbench serve exited with {proc.returncode}:\n{tail}")
            return _healthy(base)

        _wait_until(up, "workbench serve to answer its health check", timeout_s=120)
        # The first page run of a fresh server imports the whole app (slow on a busy 2-core
        # machine); do it once here so the tests' own timeouts measure the app, not the import.
        warm = browser.new_page()
        try:
            warm.goto(base)
            warm.get_by_role("textbox", name="User name").wait_for(timeout=120_000)
        finally:
            warm.close()
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[dict[str, Any]]:
    """One SQLite server for the tests whose behaviour has no backend difference."""
    home = tmp_path_factory.mktemp("browser") / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'wb.db'}")
    with pytest.MonkeyPatch.context() as mp:
        # Services that read the settings themselves see the same home and database.
        mp.setenv("WORKBENCH_HOME", str(home))
        mp.setenv("WORKBENCH_DATABASE_URL", settings.url)
        db = open_database(settings)
        try:
            _seed(db)
            with _serve(settings, browser) as base:
                yield {"url": base, "db": db}
        finally:
            db.dispose()


@pytest.fixture
def backend_server(db: Database, browser: Browser) -> Iterator[dict[str, Any]]:
    """A server of its own on each backend (`db` is SQLite or an upgraded Postgres database,
    and the env names it, so the server and the checks here read the same rows)."""
    _seed(db)
    with _serve(db.settings, browser) as base:
        yield {"url": base, "db": db}


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def _login(page: Page, base: str, name: str, path: str = "") -> None:
    page.context.clear_cookies()  # whoever was logged in before in this browser
    page.goto(f"{base}/{path}")
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"{name} (", exact=False).first).to_be_visible()


def _ready(page: Page, external_id: str) -> None:
    """The item is shown and the page run that drew it has ended, so no stale form from the
    previous item is left and keys reach the shortcuts."""
    expect(page.get_by_text(f"Item {external_id}", exact=True)).to_be_visible()
    expect(page.locator(APP_IDLE)).to_have_count(1)
    expect(page.get_by_label("Not violating (n)")).to_have_count(1)
    page.wait_for_function(SHORTCUTS_LIVE)


def _labels(db: Database, reviewer: str) -> list[Any]:
    with db.sessions() as s:
        return list(
            s.execute(
                select(Label.id, Label.item_id, Label.decision, Label.supersedes_id)
                .join(User, User.id == Label.reviewer_id)
                .where(User.name == reviewer)
                .order_by(Label.id)
            ).all()
        )


def _draft_rationale(db: Database, reviewer: str, external_id: str) -> str | None:
    """The rationale of the reviewer's saved draft of an item, as the server stored it."""
    with db.sessions() as s:
        data = s.scalar(
            select(ReviewDraft.data)
            .join(User, User.id == ReviewDraft.reviewer_id)
            .join(Item, Item.id == ReviewDraft.item_id)
            .where(User.name == reviewer, Item.external_id == external_id)
        )
    return None if data is None else str(data.get("rationale", ""))


def _wait_for_draft(db: Database, external_id: str, text: str) -> None:
    _wait_until(
        lambda: _draft_rationale(db, "alice", external_id) == text,
        f"alice's draft of {external_id} to hold {text!r} on the server "
        f"(it holds {_draft_rationale(db, 'alice', external_id)!r})",
    )


def test_label_ten_items_with_the_keyboard_then_undo(
    backend_server: dict[str, Any], page: Page
) -> None:
    db = backend_server["db"]
    _login(page, backend_server["url"], "alice")
    for n in range(10):
        _ready(page, f"i{n}")
        page.keyboard.press("n")
        expect(page.get_by_label("Not violating (n)")).to_be_checked()
        page.keyboard.press("Enter")
    _ready(page, "i10")
    # The label is committed before the next item is drawn, so it is there now.
    labels = _labels(db, "alice")
    assert len(labels) == 10 and len({lab.item_id for lab in labels}) == 10
    assert {lab.decision.value for lab in labels} == {"not_violating"}

    # Undo: the last item comes back with its label as it was; the correction supersedes it.
    page.keyboard.press("u")
    expect(page.get_by_text("Correcting your earlier label", exact=False)).to_be_visible()
    _ready(page, "i9")
    expect(page.get_by_label("Not violating (n)")).to_be_checked()
    page.keyboard.press("v")
    expect(page.get_by_label("Violating (v)")).to_be_checked()
    page.keyboard.press("1")
    expect(page.get_by_role("checkbox").first).to_be_checked()
    page.keyboard.press("r")
    page.keyboard.type("a slur in the second sentence")
    page.keyboard.press("Control+Enter")
    _ready(page, "i10")
    after = _labels(db, "alice")
    assert len(after) == 11 and after[-1].supersedes_id == labels[-1].id
    assert after[-1].decision.value == "violating"


# The tests below share the module's server. Nobody submits there, so alice's item is always
# her first one, i0, whichever of them run and in whatever order.


def _into_rationale(page: Page, base: str) -> None:
    """Log in as alice, mark her item violating and go into the rationale, all of it selected
    (what follows replaces whatever an earlier test left in the draft)."""
    _login(page, base, "alice")
    _ready(page, "i0")
    page.keyboard.press("v")
    expect(page.get_by_label("Violating (v)")).to_be_checked()
    page.keyboard.press("r")
    page.keyboard.press("Control+A")


def _reload(page: Page) -> None:
    """A reload keeps the session (the login cookie): no login form, the same item."""
    page.reload()
    _ready(page, "i0")
    assert page.get_by_role("button", name="Log in").count() == 0


def test_xss_payload_stays_inert_text(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    expect(page.get_by_text(XSS, exact=True)).to_be_visible()
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('img[src="http://e/x.png"]').count() == 0
    assert page.locator("strong", has_text="bold").count() == 0


def test_reload_mid_item_loses_nothing(server: dict[str, Any], page: Page) -> None:
    _into_rationale(page, server["url"])
    page.keyboard.type("threat in the last line")
    page.keyboard.press("Escape")  # leaving the field commits it, and the draft is saved
    _wait_for_draft(server["db"], "i0", "threat in the last line")
    _reload(page)
    expect(page.get_by_label("Violating (v)")).to_be_checked()
    expect(page.locator("textarea")).to_have_value("threat in the last line")


def test_text_typed_is_kept_across_a_reload_without_leaving_the_field(
    server: dict[str, Any], page: Page
) -> None:
    _into_rationale(page, server["url"])
    page.keyboard.type("still typing this")
    # A pause in typing commits the field (no Escape, no blur by the reviewer) ...
    _wait_for_draft(server["db"], "i0", "still typing this")
    expect(page.locator("textarea")).to_be_focused()
    page.keyboard.type(" and more")  # ... and typing goes on in the same field
    expect(page.locator("textarea")).to_have_value("still typing this and more")
    _wait_for_draft(server["db"], "i0", "still typing this and more")
    page.evaluate("() => localStorage.clear()")  # from the server's draft, not the browser's copy
    _reload(page)
    expect(page.locator("textarea")).to_have_value("still typing this and more")


def test_text_typed_just_before_a_reload_comes_back(server: dict[str, Any], page: Page) -> None:
    """No pause, no leaving the field: the text never reached the server before the reload. The
    browser kept it and puts it back, and then the server gets it."""
    _into_rationale(page, server["url"])
    page.keyboard.type("typed right before the reload")
    _reload(page)
    expect(page.locator("textarea")).to_have_value("typed right before the reload")
    # Put back, the text is committed after a pause and reaches the server's draft; then a
    # browser without the kept copy gets it from there.
    _wait_for_draft(server["db"], "i0", "typed right before the reload")
    page.keyboard.press("Escape")
    page.wait_for_function("() => localStorage.getItem('wbUnsentText') === null")
    _reload(page)
    expect(page.locator("textarea")).to_have_value("typed right before the reload")


def test_shortcuts_work_again_after_visiting_another_page(
    server: dict[str, Any], page: Page
) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    page.get_by_role("link", name="My settings").click()
    expect(page.get_by_text("Remind me to take a break")).to_be_visible()
    page.get_by_role("link", name="Review").click()
    _ready(page, "i0")
    page.keyboard.press("n")
    expect(page.get_by_label("Not violating (n)")).to_be_checked()
    page.keyboard.press("v")
    expect(page.get_by_label("Violating (v)")).to_be_checked()


def _visit(page: Page, path: str) -> None:
    """Ask for an address within the logged-in session, as the browser's back and forward
    buttons do."""
    page.evaluate(
        "(path) => { history.pushState({}, '', '/' + path);"
        " window.dispatchEvent(new PopStateEvent('popstate')); }",
        path,
    )


def _session_cookie(page: Page) -> dict[str, Any]:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "wb_session"]
    return cookie


def test_the_session_is_an_httponly_cookie_whose_hash_the_database_keeps(
    server: dict[str, Any], page: Page
) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    cookie = _session_cookie(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"]  # plain http here; under TLS it is Secure
    assert "wb_session" not in page.evaluate("document.cookie")  # no script can read it
    with server["db"].sessions() as s:
        hashes = set(s.scalars(select(UserSession.token_hash)))
    assert cookie["value"] not in hashes
    assert hashlib.sha256(cookie["value"].encode()).hexdigest() in hashes


def test_a_revoked_session_is_logged_out_at_the_next_reload(
    server: dict[str, Any], page: Page
) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    _reload(page)
    with server["db"].sessions.begin() as s:
        assert logout(s, _session_cookie(page)["value"])
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.get_by_text("alice (", exact=False).count() == 0


def test_logging_out_clears_the_cookie(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    page.get_by_role("button", name="Log out").click()
    _wait_until(
        lambda: not [c for c in page.context.cookies() if c["name"] == "wb_session"],
        "the login cookie to be cleared",
    )
    # The logout route answers with a redirect to the login form: wait for it to land before
    # reloading (a reload in the middle of that navigation has no page to act on).
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.wait_for_load_state("load")
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert page.get_by_text("alice (", exact=False).count() == 0


@pytest.mark.parametrize(
    ("name", "heading"),
    [("erin", "Engineer"), ("lena", "Lead"), ("ada", "Admin")],
)
def test_each_role_lands_on_its_own_page(
    server: dict[str, Any], page: Page, name: str, heading: str
) -> None:
    _login(page, server["url"], name)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


def test_a_lead_who_only_browses_takes_no_lease(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "lena")
    expect(page.get_by_role("heading", name="Lead", exact=True)).to_be_visible()
    for link, heading in (
        ("Adjudication", "Adjudication"),
        ("Gold", "Gold checks"),
        ("Lead", "Lead"),
    ):
        page.get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(page.locator(APP_IDLE)).to_have_count(1)
    page.reload()
    expect(page.get_by_role("heading", name="Lead", exact=True)).to_be_visible()
    expect(page.locator(APP_IDLE)).to_have_count(1)
    with server["db"].sessions() as s:
        lena = s.scalar(select(User.id).where(User.name == "lena"))
        assert s.scalars(select(Lease).where(Lease.reviewer_id == lena)).all() == []


def test_a_deep_link_is_kept_across_login(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "erin", path="settings")
    expect(page.get_by_text("Remind me to take a break")).to_be_visible()
    assert page.url.endswith("/settings")


def test_a_page_a_role_may_not_open_says_so(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "alice", path="engineer")
    expect(page.get_by_text("The Engineer page is for the engineer role")).to_be_visible()
    assert page.get_by_role("link", name="Engineer").count() == 0  # not in her sidebar
    assert page.get_by_role("button", name="Launch a retrain round").count() == 0
    # Within her session: her own pages are served by address ...
    _visit(page, "settings")
    expect(page.get_by_text("Remind me to take a break")).to_be_visible()
    # ... and the engineer's again says it is not hers.
    _visit(page, "engineer")
    expect(page.get_by_text("The Engineer page is for the engineer role")).to_be_visible()
    # The engineer, by contrast, gets there by address.
    _login(page, server["url"], "erin")
    _visit(page, "engineer")
    expect(page.get_by_role("heading", name="Engineer")).to_be_visible()
    assert page.get_by_text("is for the engineer role").count() == 0


def _image_bytes(page: Page) -> bytes:
    src = page.locator('[data-testid="stImage"] img, [data-testid="stImageContainer"] img').first
    expect(src).to_be_visible()
    return page.request.get(src.evaluate("el => el.src")).body()


def _is_grey_and_smooth(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        r, _g, b = rgb.split()
        grey = max(abs(a - c) for a, c in zip(r.tobytes(), b.tobytes(), strict=True)) < 10
        row = [rgb.getpixel((x, rgb.height // 2))[0] for x in range(rgb.width)]
        return grey and max(row) - min(row) < 60


def test_images_are_blurred_until_clicked(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "ivy")
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="pics").click()
    _ready(page, "img0")
    assert _is_grey_and_smooth(_image_bytes(page))
    page.get_by_role("button", name="Reveal image").click()
    expect(page.get_by_role("button", name="Reveal image")).to_have_count(0)
    revealed = _image_bytes(page)
    assert not _is_grey_and_smooth(revealed)


def test_submit_is_on_screen_at_1366x768_with_the_done_and_left_counter(
    server: dict[str, Any], browser: Browser
) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _login(page, server["url"], "alice")
        _ready(page, "i0")
        expect(page.get_by_role("button", name="Submit (Enter)")).to_be_in_viewport(ratio=1)
        expect(page.get_by_text("0 done this session", exact=False)).to_be_visible()
        expect(page.get_by_text(f"{N_TEXT} left in the queue", exact=False)).to_be_visible()
    finally:
        context.close()
