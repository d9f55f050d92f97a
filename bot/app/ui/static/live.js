// fixloop's web UI: refresh a running session's page from /ui/sessions/<id>/live every few seconds,
// until the session has ended. The server renders (and escapes) the fragment; without JavaScript the
// page is the same, only still.
"use strict";
(function () {
  const live = document.querySelector("[data-live]");
  if (!live) {
    return;
  }
  const url = live.getAttribute("data-live");
  let shown = live.innerHTML;
  async function refresh() {
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (answer.ok) {
        const html = await answer.text();
        if (html !== shown) {
          live.innerHTML = html;
          shown = html;
        }
        if (live.querySelector("[data-ended]")) {
          live.removeAttribute("data-live");
          return;
        }
      }
    } catch (error) {
      // the App away for a moment: try again at the next tick
    }
    window.setTimeout(refresh, 1500);
  }
  window.setTimeout(refresh, 1500);
})();
