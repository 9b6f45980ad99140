"""The review page in a real browser: Debian's Chromium driven by Playwright against a real
`workbench serve` (one server for the module). Keyboard labelling, undo, reload without loss,
roles enforced by URL too, inert user content, and images blurred until clicked."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

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


def _seed(home: Path, url: str) -> None:
    """Projects, users and queued items, made through the services (as the CLI would)."""
    os.environ["WORKBENCH_HOME"] = str(home)
    os.environ["WORKBENCH_DATABASE_URL"] = url
    sys.path.insert(0, str(Path(__file__).parent))
    from builders import make_items, make_project

    from workbench.db.database import open_database
    from workbench.db.models import MediaAsset, Modality, Role
    from workbench.services.audit import Actor
    from workbench.services.queue.enqueue import NewEntry, enqueue
    from workbench.services.users import add_user

    db = open_database()
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
        ):
            add_user(s, name, role, Actor.system(), password=PW)
    db.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("browser") / "home"
    url = f"sqlite:///{home / 'wb.db'}"
    saved = {k: os.environ.get(k) for k in ("WORKBENCH_HOME", "WORKBENCH_DATABASE_URL")}
    _seed(home, url)
    port = _free_port()
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_DATABASE_URL": url,
           "WORKBENCH_PROJECT": "p"}  # fmt: skip
    exe = Path(sys.executable).parent / "workbench"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--no-worker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("workbench serve did not come up within 60 s")
        yield {"url": base, "home": home, "db_url": url}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def browser(server: dict[str, Any]) -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        # The first page run of a fresh server imports the whole app (slow on a busy 2-core
        # machine); do it once here so the tests' own timeouts measure the app, not the import.
        warm = b.new_page()
        warm.goto(server["url"])
        warm.get_by_role("textbox", name="User name").wait_for(timeout=120_000)
        warm.close()
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def _login(page: Page, base: str, name: str, path: str = "") -> None:
    page.goto(f"{base}/{path}")
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(PW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"{name} (", exact=False).first).to_be_visible()


def _ready(page: Page, external_id: str) -> None:
    expect(page.get_by_text(f"Item {external_id}", exact=True)).to_be_visible()
    # Until the run ends, the previous item's form may still be on the page (stale).
    expect(page.get_by_label("Not violating (n)")).to_have_count(1)
    page.wait_for_function("window.__wbShortcutsInstalled === true")


def _labels(server: dict[str, Any], reviewer: str) -> list[Any]:
    from sqlalchemy import select

    from workbench.db.database import open_database
    from workbench.db.models import Label, User

    db = open_database()
    with db.sessions() as s:
        rows = list(
            s.execute(
                select(Label.id, Label.item_id, Label.decision, Label.supersedes_id)
                .join(User, User.id == Label.reviewer_id)
                .where(User.name == reviewer)
                .order_by(Label.id)
            ).all()
        )
    db.dispose()
    return rows


def test_xss_payload_stays_inert_text(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i0")
    expect(page.get_by_text(XSS, exact=True)).to_be_visible()
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator('img[src="http://e/x.png"]').count() == 0
    assert page.locator("strong", has_text="bold").count() == 0


def test_label_ten_items_with_the_keyboard_then_undo(server: dict[str, Any], page: Page) -> None:
    _login(page, server["url"], "alice")
    for n in range(10):
        _ready(page, f"i{n}")
        page.keyboard.press("n")
        expect(page.get_by_label("Not violating (n)")).to_be_checked()
        page.keyboard.press("Enter")
    _ready(page, "i10")
    labels = _labels(server, "alice")
    assert len(labels) == 10 and len({lab.item_id for lab in labels}) == 10

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
    after = _labels(server, "alice")
    assert len(after) == 11 and after[-1].supersedes_id == labels[-1].id
    assert after[-1].decision.value == "violating"


def _into_rationale(page: Page, base: str) -> None:
    """Log in as alice, mark her item violating and go into the rationale, all of it selected
    (what follows replaces whatever an earlier test left in the draft)."""
    _login(page, base, "alice")
    _ready(page, "i10")
    page.keyboard.press("v")
    expect(page.get_by_label("Violating (v)")).to_be_checked()
    page.keyboard.press("r")
    page.keyboard.press("Control+A")


def _reload_and_log_in(page: Page, base: str) -> None:
    page.reload()
    _login(page, base, "alice")
    _ready(page, "i10")


def test_reload_mid_item_loses_nothing(server: dict[str, Any], page: Page) -> None:
    _into_rationale(page, server["url"])
    page.keyboard.type("threat in the last line")
    page.keyboard.press("Escape")  # leaving the field commits it, and the draft is saved
    page.wait_for_timeout(1500)
    _reload_and_log_in(page, server["url"])
    expect(page.get_by_label("Violating (v)")).to_be_checked()
    expect(page.locator("textarea")).to_have_value("threat in the last line")


def test_text_typed_is_kept_across_a_reload_without_leaving_the_field(
    server: dict[str, Any], page: Page
) -> None:
    _into_rationale(page, server["url"])
    page.keyboard.type("still typing this")
    page.wait_for_timeout(2500)  # a pause in typing commits the field (no Escape, no blur)
    page.keyboard.type(" and more")  # typing goes on in the same field after the commit
    expect(page.locator("textarea")).to_have_value("still typing this and more")
    page.wait_for_timeout(2500)
    page.evaluate("() => localStorage.clear()")  # from the server's draft, not the browser's copy
    _reload_and_log_in(page, server["url"])
    expect(page.locator("textarea")).to_have_value("still typing this and more")


def test_text_typed_just_before_a_reload_comes_back(server: dict[str, Any], page: Page) -> None:
    """No pause, no leaving the field: the text never reached the server before the reload. The
    browser kept it and puts it back, and then the server gets it."""
    _into_rationale(page, server["url"])
    page.keyboard.type("typed right before the reload")
    _reload_and_log_in(page, server["url"])
    expect(page.locator("textarea")).to_have_value("typed right before the reload")
    # Committed after the pause, the text is on the server: a browser without the kept copy
    # gets it from the draft.
    page.wait_for_timeout(2500)
    page.keyboard.press("Escape")
    page.wait_for_function("() => localStorage.getItem('wbUnsentText') === null")
    _reload_and_log_in(page, server["url"])
    expect(page.locator("textarea")).to_have_value("typed right before the reload")


def test_shortcuts_work_again_after_visiting_another_page(
    server: dict[str, Any], page: Page
) -> None:
    _login(page, server["url"], "alice")
    _ready(page, "i10")
    page.get_by_role("link", name="My settings").click()
    expect(page.get_by_text("Remind me to take a break")).to_be_visible()
    page.get_by_role("link", name="Review").click()
    _ready(page, "i10")
    page.keyboard.press("n")
    expect(page.get_by_label("Not violating (n)")).to_be_checked()
    page.keyboard.press("v")
    expect(page.get_by_label("Violating (v)")).to_be_checked()


def test_reviewer_cannot_reach_the_engineer_page_even_by_url(
    server: dict[str, Any], page: Page
) -> None:
    _login(page, server["url"], "alice", path="engineer")
    page.wait_for_timeout(1500)
    assert page.get_by_role("heading", name="Engineer").count() == 0
    assert page.get_by_role("link", name="Engineer").count() == 0
    # The engineer, by contrast, gets there.
    _login(page, server["url"], "erin", path="engineer")
    expect(page.get_by_role("heading", name="Engineer")).to_be_visible()


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
