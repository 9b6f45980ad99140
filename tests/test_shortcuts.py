"""The review page's keyboard script on its own, in Chromium: a page built here stands in for
Streamlit's, so the timing that is a race on the real page (the rationale field not rendered yet
when "r" is pressed) can be set up exactly. The page runs on Playwright's clock: where the script
acts on a timer or the next frame, the test moves the clock on instead of waiting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from workbench.ui.shortcuts import script_html

pytestmark = pytest.mark.browser

KEYS = {"v": "(v)", "n": "(n)", "e": "(e)", "r": "@rationale"}

# Radios named as the review page names them; clicks are counted so that a letter meant for the
# rationale that fired a shortcut shows up.
PAGE = """
<label><input type="radio" name="d" aria-label="Violating (v)">Violating (v)</label>
<label><input type="radio" name="d" aria-label="Not violating (n)">Not violating (n)</label>
<label><input type="radio" name="d" aria-label="Unsure, escalate (e)">Unsure, escalate (e)</label>
<button>Submit (Enter)</button>
<script>
  window.clicks = [];
  document.addEventListener("click", (e) => {
    window.clicks.push(e.target.getAttribute("aria-label"));
  });
  window.addTextarea = (value) => {
    const ta = document.createElement("textarea");
    ta.value = value;
    document.body.appendChild(ta);
  };
</script>
"""


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    pg = context.new_page()
    # Time still passes by itself; `run_for` fires every frame and timer of a span at once.
    pg.clock.install()
    pg.set_content(PAGE + script_html(KEYS, "Submit (Enter)"))
    pg.wait_for_function("window.__wbShortcutsInstalled === true")
    yield pg
    context.close()


def _state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        "() => { const ta = document.querySelector('textarea');"
        " return {value: ta ? ta.value : null, focused: document.activeElement === ta,"
        " clicks: window.clicks}; }"
    )


def test_shortcut_keys_click_the_controls(page: Any) -> None:
    page.keyboard.press("n")
    page.keyboard.press("v")
    assert _state(page)["clicks"] == ["Not violating (n)", "Violating (v)"]


def test_r_focuses_the_rationale_at_once_when_it_is_there(page: Any) -> None:
    page.evaluate("window.addTextarea('draft')")
    page.keyboard.press("r")
    page.keyboard.type(" and more")
    assert _state(page) == {"value": "draft and more", "focused": True, "clicks": []}


def test_text_typed_before_the_rationale_renders_goes_into_it_not_into_shortcuts(
    page: Any,
) -> None:
    page.keyboard.press("r")
    page.keyboard.type("in vain")  # "n", "v" and "e"-free here, but "n" and "v" are shortcuts
    page.keyboard.press("Backspace")
    page.keyboard.press("Enter")  # a new line in the text, not a submit
    page.keyboard.type("ok")
    page.evaluate("window.addTextarea('draft ')")
    page.wait_for_function("document.activeElement === document.querySelector('textarea')")
    assert _state(page) == {"value": "draft in vai\nok", "focused": True, "clicks": []}
    page.keyboard.type("!")  # typing goes on in the field
    assert _state(page)["value"] == "draft in vai\nok!"


def test_select_all_before_the_rationale_renders_replaces_its_text(page: Any) -> None:
    page.keyboard.press("r")
    page.keyboard.press("Control+A")
    page.keyboard.type("new")
    page.evaluate("window.addTextarea('old draft')")
    page.wait_for_function("document.activeElement === document.querySelector('textarea')")
    assert _state(page)["value"] == "new"


def test_escape_with_nothing_typed_drops_a_waiting_rationale_request(page: Any) -> None:
    page.keyboard.press("r")
    page.keyboard.press("Escape")
    page.keyboard.press("n")  # a shortcut again
    page.evaluate("window.addTextarea('draft')")
    page.clock.run_for(1000)  # a request still waiting would take the field in the next frame
    assert _state(page) == {"value": "draft", "focused": False, "clicks": ["Not violating (n)"]}


def test_text_then_escape_before_the_rationale_renders_is_kept_and_the_field_left(
    page: Any,
) -> None:
    """A fast typist: r, the text, Escape, then a shortcut, all before the field exists."""
    page.keyboard.press("r")
    page.keyboard.type(" and more")
    page.keyboard.press("Escape")
    page.keyboard.press("v")  # a shortcut again at once
    page.evaluate("window.addTextarea('draft')")
    page.wait_for_function("document.querySelector('textarea').value === 'draft and more'")
    assert _state(page) == {
        "value": "draft and more", "focused": False, "clicks": ["Violating (v)"],
    }  # fmt: skip


def test_ctrl_enter_before_the_rationale_renders_submits_after_the_text_is_in(
    page: Any,
) -> None:
    page.evaluate(
        "document.querySelector('button').addEventListener('click', () =>"
        " window.clicks.push('submit with ' + document.querySelector('textarea').value))"
    )
    page.keyboard.press("r")
    page.keyboard.type("slur")
    page.keyboard.press("Control+Enter")
    page.clock.run_for(1000)
    assert _state(page)["clicks"] == []  # nothing to submit into yet
    page.evaluate("window.addTextarea('')")
    page.clock.run_for(1000)  # the text goes in at the next frame, the submit 400 ms later
    assert [c for c in _state(page)["clicks"] if c] == ["submit with slur"]


def test_a_rationale_request_lapses_when_no_field_appears(page: Any) -> None:
    page.keyboard.press("r")
    page.clock.run_for(3100)  # the request lapses at the first frame after 3 s
    page.keyboard.press("n")
    assert _state(page)["clicks"] == ["Not violating (n)"]


_ADD_FRAME = """(html) => new Promise((resolve) => {
  const frame = document.createElement("iframe");
  frame.srcdoc = html;
  frame.onload = () => resolve();
  document.body.appendChild(frame);
})"""


def test_each_new_frame_takes_the_shortcuts_over_exactly_once(browser: Any) -> None:
    """Streamlit removes the script's iframe when the reviewer leaves the page (its listeners
    then never run again) and adds a new one on return: that one must work, and two frames on
    the page at once must not handle a key twice."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(PAGE)
        html = script_html(KEYS, "Submit (Enter)")
        page.evaluate(_ADD_FRAME, html)
        page.keyboard.press("n")
        page.evaluate(_ADD_FRAME, html)  # a second frame while the first is still there
        page.keyboard.press("v")
        assert _state(page)["clicks"] == ["Not violating (n)", "Violating (v)"]
        # Away from the page (every frame removed) and back (a new frame).
        page.evaluate("() => document.querySelectorAll('iframe').forEach((f) => f.remove())")
        page.keyboard.press("n")
        assert len(_state(page)["clicks"]) == 2
        page.evaluate(_ADD_FRAME, html)
        page.keyboard.press("e")
        assert _state(page)["clicks"][2:] == ["Unsure, escalate (e)"]
    finally:
        context.close()
