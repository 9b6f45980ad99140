// Installed before the app loads (Playwright init script): notes when Streamlit's server starts
// and finishes each script run, from its own websocket messages (ForwardMsg: field 4 new_session
// at every run start, field 6 script_finished). The stale markers alone do not say it: a rerun
// that is fast enough is rendered in one go and never marks an element stale.
(() => {
  if (window.__wbRuns) { return; }
  const runs = {started: 0, finished: 0, tStarted: null, onMessage: null};
  window.__wbRuns = runs;
  // The top-level fields of one protobuf message: number -> varint value (or true).
  function topFields(buffer) {
    const b = new Uint8Array(buffer);
    const out = {};
    let i = 0;
    const varint = () => {
      let value = 0, scale = 1, byte = 0x80;
      while ((byte & 0x80) && i < b.length) {
        byte = b[i++]; value += (byte & 0x7f) * scale; scale *= 128;
      }
      return value;
    };
    while (i < b.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag % 8;
      if (wire === 0) { out[field] = varint(); }
      else if (wire === 2) { const n = varint(); out[field] = true; i += n; }
      else if (wire === 1) { i += 8; } else if (wire === 5) { i += 4; } else { break; }
    }
    return out;
  }
  const Native = window.WebSocket;
  class Watched extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        if (!(e.data instanceof ArrayBuffer)) { return; }
        const now = performance.now();
        const f = topFields(e.data);
        if (f[4] !== undefined) { runs.started += 1; runs.tStarted = now; }
        // 2 is FINISHED_EARLY_FOR_RERUN: another run follows at once.
        if (f[6] !== undefined && f[6] !== 2) { runs.finished += 1; }
        if (runs.onMessage) { runs.onMessage(); }
      });
    }
  }
  window.WebSocket = Watched;
})();
