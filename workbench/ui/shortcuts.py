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
  // The listeners belong to this iframe: once Streamlit removes it (another page, the break
  // screen, an empty queue) the browser never calls them again. So each new iframe takes over:
  // it removes the previous one's listeners (dead or alive, never two sets) and adds its own.
  if (win.__wbShortcuts && win.__wbShortcuts.frame === window) { return; }
  if (win.__wbShortcuts) {
    try { win.__wbShortcuts.uninstall(); } catch (err) { /* its frame is gone */ }
  }
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
    // Text for the rationale still waiting for its field: submit once it is in.
    if (pending !== null) { pending.submit = true; return; }
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
  function onInput(e) {
    const el = e.target;
    if (!typing(el) || el.tagName.toLowerCase() !== "textarea") { return; }
    keepUnsent(el);
    clearTimeout(commitTimer);
    commitTimer = setTimeout(function() {
      if (doc.activeElement !== el || !el.isConnected) { return; }
      const start = el.selectionStart, end = el.selectionEnd;
      el.blur();
      el.focus();
      try { el.setSelectionRange(start, end); } catch (err) { /* field replaced meanwhile */ }
    }, 1000);
  }
  // Text typed in the last second before a reload has not reached the server yet. It is kept in
  // this browser (localStorage, per field: the field's key names the item and the lease) until
  // the field shows it after a rerun, i.e. the server has it, and for 10 minutes at most. After a
  // reload the field gets it back and the pause-commit above sends it.
  const UNSENT = "wbUnsentText", UNSENT_MS = 10 * 60 * 1000;
  function fieldKey(el) {
    // Only the review form's rationale: its key is unique to the item and the lease.
    const holder = el.closest('[class*="st-key-rationale"]');
    if (!holder) { return null; }
    return Array.from(holder.classList).find((c) => c.startsWith("st-key-rationale")) || null;
  }
  function readUnsent() {
    try { return JSON.parse(win.localStorage.getItem(UNSENT) || "{}"); } catch (err) { return {}; }
  }
  function writeUnsent(all) {
    const now = Date.now();
    for (const k of Object.keys(all)) { if (now - all[k].at > UNSENT_MS) { delete all[k]; } }
    try {
      if (Object.keys(all).length) { win.localStorage.setItem(UNSENT, JSON.stringify(all)); }
      else { win.localStorage.removeItem(UNSENT); }
    } catch (err) { /* storage full or blocked: the pause-commit still saves the draft */ }
  }
  function keepUnsent(el) {
    const key = fieldKey(el);
    if (!key) { return; }
    const all = readUnsent();
    all[key] = {text: el.value, at: Date.now()};
    writeUnsent(all);
  }
  const restored = new Set();
  function settleUnsent() {
    const all = readUnsent();
    if (!Object.keys(all).length) { return; }
    let changed = false;
    for (const ta of doc.querySelectorAll("textarea")) {
      const key = fieldKey(ta), entry = key && all[key];
      if (!entry) { continue; }
      if (ta.value === entry.text) {
        // Shown by a rerun: the server has it. (A field being typed in shows its own text.)
        if (doc.activeElement !== ta) { delete all[key]; changed = true; }
        continue;
      }
      if (restored.has(key) || doc.activeElement === ta || ta.disabled) { continue; }
      restored.add(key);  // once per page load: later differences are the reviewer's own edits
      ta.focus();
      ta.setSelectionRange(0, ta.value.length);
      doc.execCommand("insertText", false, entry.text);
    }
    if (changed) { writeUnsent(all); }
  }
  // "r" can come before the rationale field is on the page (Streamlit renders widgets lazily,
  // and a rerun may be under way). Then what is typed next is meant for the field, not for the
  // shortcuts ("n" in a word must not choose "not violating"): hold it until the field appears,
  // then focus the field and type it there. Escape (or Ctrl+Enter) after some text means "then
  // leave the field (and submit)": keys are shortcuts again at once, and the text goes in when
  // the field appears. Escape with nothing typed drops the request, as does no field in 3 s
  // (10 s once something was typed).
  let pending = null;
  function settlePending() {
    if (pending === null) { return; }
    const ta = doc.querySelector("textarea");
    if (ta && !ta.disabled) {
      const text = pending.text, replaceAll = pending.replace;
      const leave = pending.leave, andSubmit = pending.submit;
      pending = null;
      ta.focus();
      const end = ta.value.length;
      // Select-all pressed meanwhile: what follows replaces the field's text, as it would have.
      try { ta.setSelectionRange(replaceAll ? 0 : end, end); } catch (err) { /* no text */ }
      // insertText fires the input event React listens to, as typing would.
      if (text) { doc.execCommand("insertText", false, text); }
      else if (replaceAll && end > 0) { doc.execCommand("delete"); }
      if (leave) { ta.blur(); }  // leaving commits the value
      if (andSubmit) { setTimeout(submit, 400); }
      return;
    }
    const wait = pending.text || pending.replace ? 10000 : 3000;
    if (Date.now() - pending.since > wait) { pending = null; return; }
    win.requestAnimationFrame(settlePending);
  }
  function focusRationale() {
    if (pending === null) {
      pending = {since: Date.now(), text: "", replace: false, leave: false, submit: false};
    } else {
      pending.leave = pending.submit = false;  // back into the field before it even appeared
    }
    settlePending();
  }
  function onKeydown(e) {
    const k = win.__wbKeys;
    const active = doc.activeElement;
    if (pending !== null && !pending.leave) {
      e.preventDefault();
      e.stopPropagation();
      const mod = e.ctrlKey || e.metaKey;
      const typed = pending.text !== "" || pending.replace;
      if (e.key === "Escape" || (mod && e.key === "Enter")) {
        if (!typed) { pending = null; return; }
        pending.leave = true;
        pending.submit = e.key === "Enter";
        return;
      }
      if (mod && e.key.toLowerCase() === "a") { pending.replace = true; pending.text = ""; }
      else if (e.key === "Backspace") { pending.text = pending.text.slice(0, -1); }
      else if (e.key === "Enter" && !mod) { pending.text += "\\n"; }
      else if (e.key.length === 1 && !mod && !e.altKey) { pending.text += e.key; }
      return;
    }
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
    if (target === "@rationale") { focusRationale(); return; }
    let el = null;
    for (const input of doc.querySelectorAll("input[aria-label]")) {
      if (input.getAttribute("aria-label").trim().endsWith(target)) { el = input; break; }
    }
    el = el || findByText("label", target) || findByText("button", target);
    if (el) { el.click(); }
  }
  doc.addEventListener("input", onInput, true);
  doc.addEventListener("keydown", onKeydown, true);
  const settler = win.setInterval(settleUnsent, 500);
  win.__wbShortcuts = {
    frame: window,
    uninstall: function() {
      doc.removeEventListener("input", onInput, true);
      doc.removeEventListener("keydown", onKeydown, true);
      win.clearInterval(settler);
      clearTimeout(commitTimer);
      pending = null;
    },
  };
  win.__wbShortcutsInstalled = true;
})();
</script>
"""


def script_html(key_map: dict[str, str], submit_label_suffix: str) -> str:
    """The script element; it acts on its parent window's document (the page around the iframe
    Streamlit puts it in, or its own page when loaded at the top level)."""
    payload = json.dumps({"map": key_map, "submit": submit_label_suffix})
    # The script is ours, never user content: only key names and fixed label suffixes go in.
    return _SCRIPT % {"keys": payload}


def install(key_map: dict[str, str], submit_label_suffix: str) -> None:
    """`key_map` maps a key to the text a label or button ends with, e.g. "v" -> "(v)".

    The script stays the same from item to item, so Streamlit keeps its iframe (and the
    listeners, with their state) across reruns; a new iframe takes the listeners over."""
    html = script_html(key_map, submit_label_suffix)
    if hasattr(st, "iframe"):
        st.iframe(html, height=1)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(html, height=0)
