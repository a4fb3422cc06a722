// Live refresh: a page marked data-refresh="N" reloads its main part every N seconds,
// unless someone is typing in it or the tab is hidden; it stops once the page says there is
// nothing more to wait for (an incident that ended). The page works the same without it.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.refresh) { return; }
  var every = Math.max(2, parseInt(main.dataset.refresh, 10) || 5) * 1000;
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) { return; }
        main.replaceChildren.apply(main, Array.from(fresh.childNodes));
        if (!fresh.dataset.refresh) { clearInterval(timer); }
      })
      .catch(function () { /* offline for a moment: try again next time */ });
  }
  var timer = setInterval(refresh, every);
})();
