"""Keyboard shortcuts: a small script that maps keys to clicks on the page's own controls.

Why clicks: the widgets stay the single source of truth (and save the draft as usual), and a
shortcut can do nothing a mouse could not. Keys never fire while typing in a text field.
"""

from __future__ import annotations

import json

import streamlit as st

_SCRIPT = """
<script>
(function() {
  const doc = window.parent.document;
  const keys = %(keys)s;
  const win = window.parent;
  win.__wbKeys = keys;
  if (win.__wbShortcutsInstalled) { return; }
  win.__wbShortcutsInstalled = true;
  function findByText(selector, text) {
    for (const el of doc.querySelectorAll(selector)) {
      if ((el.innerText || "").trim().endsWith(text)) { return el; }
    }
    return null;
  }
  function typing(el) {
    if (!el) { return false; }
    const tag = (el.tagName || "").toLowerCase();
    if (tag === "input") {
      const type = (el.type || "text").toLowerCase();
      return !["radio", "checkbox", "button", "submit", "range"].includes(type);
    }
    return tag === "textarea" || tag === "select" || el.isContentEditable;
  }
  let lastSubmit = 0;
  let lastItem = null;
  function submit() {
    const now = Date.now();
    const btn = findByText("button", win.__wbKeys.submit);
    if (!btn || btn.disabled) { return; }
    // The submit button's keyed container names the item (its key holds the item's form key).
    const holder = btn.closest('[class*="st-key-"]');
    const item = holder ? holder.className : "";
    // A held or bouncing key submits the same item once. Only the same item: a reviewer who
    // presses Enter on the next item soon after the last submit must not be ignored.
    if (item === lastItem && now - lastSubmit < 600) { return; }
    lastSubmit = now; lastItem = item; btn.click();
  }
  // Streamlit sends a text field's value only when the field loses focus, so text being typed
  // would be lost on a reload. After a pause in typing, leave the field and come straight back
  // (caret kept): the value is committed and the draft saved on the server while typing.
  let commitTimer = null;
  doc.addEventListener("input", function(e) {
    const el = e.target;
    if (!typing(el) || el.tagName.toLowerCase() !== "textarea") { return; }
    clearTimeout(commitTimer);
    commitTimer = setTimeout(function() {
      if (doc.activeElement !== el || !el.isConnected) { return; }
      const start = el.selectionStart, end = el.selectionEnd;
      el.blur();
      el.focus();
      try { el.setSelectionRange(start, end); } catch (err) { /* field replaced meanwhile */ }
    }, 1000);
  }, true);
  doc.addEventListener("keydown", function(e) {
    const k = win.__wbKeys;
    const active = doc.activeElement;
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") {
      e.preventDefault();
      // Leave the text field first so its value is committed, then submit.
      if (typing(active)) { active.blur(); setTimeout(submit, 400); } else { submit(); }
      return;
    }
    if (e.key === "Escape" && typing(active)) { active.blur(); return; }
    if (typing(active) || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "Enter") {
      if (active && active.tagName && active.tagName.toLowerCase() === "button") { return; }
      e.preventDefault(); submit(); return;
    }
    const target = k.map[e.key];
    if (!target) { return; }
    e.preventDefault();
    if (target === "@rationale") {
      const ta = doc.querySelector("textarea");
      if (ta) { ta.focus(); }
      return;
    }
    let el = null;
    for (const input of doc.querySelectorAll("input[aria-label]")) {
      if (input.getAttribute("aria-label").trim().endsWith(target)) { el = input; break; }
    }
    el = el || findByText("label", target) || findByText("button", target);
    if (el) { el.click(); }
  }, true);
})();
</script>
"""


def install(key_map: dict[str, str], submit_label_suffix: str) -> None:
    """`key_map` maps a key to the text a label or button ends with, e.g. "v" -> "(v)".

    The script must stay the same from item to item: a changed script makes a new iframe, and
    the key listener defined in the old one dies with it."""
    payload = json.dumps({"map": key_map, "submit": submit_label_suffix})
    # The script is ours, never user content: only key names and fixed label suffixes go in.
    html = _SCRIPT % {"keys": payload}
    if hasattr(st, "iframe"):
        st.iframe(html, height=1)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(html, height=0)
