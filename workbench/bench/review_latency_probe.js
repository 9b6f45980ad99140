// Installed once in the page (Streamlit reruns never reload it), given the text every item
// starts with. Times are performance.now() of the page, so neither Playwright's round trips nor
// Python's scheduling are part of them.
// - t0: the keydown of the armed key (window, capture phase: before the page's own handler);
// - tStart: the server began the rerun (its new_session message, or the first element marked
//   stale if that came first);
// - tVisible: the item element shows a text other than the armed one (the next item);
// - tEnd: the rerun finished (script_finished) and its output is rendered (no element stale,
//   checked after the next frame);
// - tReady: after tEnd, a new item shown and its form's decision radio rendered (widgets render
//   lazily), i.e. the page is ready for the next keystroke.
(prefix) => {
  if (window.__wbLatency) { return; }
  const doc = document;
  const runs = window.__wbRuns;
  const rl = {runsAtArm: 0, startsAtArm: 0, key: null, from: null, lastEnter: -1e9,
              t0: null, tStart: null, tVisible: null, tReady: null, tEnd: null, shown: null};
  rl.itemText = () => {
    const main = doc.querySelector('[data-testid="stMain"]') || doc.body;
    for (const el of main.querySelectorAll('[data-testid="stText"]')) {
      const t = el.innerText || "";
      if (t.startsWith(prefix)) { return t; }
    }
    return null;
  };
  function decisionInput(suffix) {
    for (const label of doc.querySelectorAll("label")) {
      if ((label.innerText || "").trim().endsWith(suffix)) { return label.querySelector("input"); }
    }
    return null;
  }
  rl.decisionChecked = (suffix) => { const i = decisionInput(suffix); return !!(i && i.checked); };
  // Widgets render lazily (a skeleton first), so the form is usable once its radio exists.
  rl.formReady = () => decisionInput("(n)") !== null && window.__wbShortcutsInstalled === true;
  rl.idle = () => doc.querySelectorAll('[data-stale="true"]').length === 0;
  rl.arm = (key) => {
    rl.key = key; rl.from = rl.itemText(); rl.runsAtArm = runs.finished;
    rl.startsAtArm = runs.started;
    rl.t0 = rl.tStart = rl.tVisible = rl.tReady = rl.tEnd = rl.shown = null;
  };
  function check() {
    const now = performance.now();
    const stale = !rl.idle();
    if (rl.t0 === null) { return; }
    if (rl.tStart === null && stale) { rl.tStart = now; }
    if (rl.tVisible === null) {
      const text = rl.itemText();
      if (text !== null && text !== rl.from) { rl.tVisible = now; rl.shown = text; }
    }
    if (rl.tEnd === null && !stale && runs.finished > rl.runsAtArm) { rl.tEnd = now; }
    if (rl.tReady === null && rl.tEnd !== null && rl.tVisible !== null && rl.formReady()) {
      rl.tReady = now;
    }
  }
  rl.check = check;
  new MutationObserver(check).observe(doc.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ["data-stale"],
  });
  // A run's messages are rendered in a later task: look again after the next frame.
  runs.onMessage = () => {
    if (rl.t0 !== null && rl.tStart === null && runs.started > rl.startsAtArm) {
      rl.tStart = runs.tStarted;
    }
    requestAnimationFrame(() => setTimeout(check, 0));
  };
  window.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { rl.lastEnter = performance.now(); }
    if (rl.key !== null && e.key === rl.key && rl.t0 === null) { rl.t0 = performance.now(); }
  }, true);
  // What Python waits for after a key press: the rerun finished, and if an item came, its form.
  rl.settled = () => rl.tEnd !== null && (rl.tVisible === null || rl.tReady !== null);
  // What Python waits for after logging in: an item on the page, rendered, its form usable.
  rl.showsItem = () => rl.itemText() !== null && rl.idle() && rl.formReady();
  rl.sinceEnter = () => performance.now() - rl.lastEnter;
  // The timings of the last armed key press.
  rl.reading = () => ({from: rl.from, shown: rl.shown, t0: rl.t0, tStart: rl.tStart,
                       tVisible: rl.tVisible, tReady: rl.tReady, tEnd: rl.tEnd});
  // The probe's state, for the error message when a key press leads to no finished rerun.
  rl.state = () => ({t0: rl.t0, tStart: rl.tStart, tEnd: rl.tEnd, runsStarted: runs.started,
                     runsFinished: runs.finished, runsAtArm: rl.runsAtArm,
                     now: performance.now(), notViolatingChecked: rl.decisionChecked("(n)"),
                     formReady: rl.formReady()});
  window.__wbLatency = rl;
}
