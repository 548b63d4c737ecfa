// Fleet dashboard: subscribe to /api/stream and re-render the panels after each change.
// Served as a file (the CSP forbids inline script); no dependencies.
(function () {
  "use strict";
  var panels = document.getElementById("panels");
  var status = document.getElementById("live-status");
  var log = document.getElementById("event-log");
  if (!panels || !window.EventSource) { return; }
  var MAX_LOG = 50;
  var timer = null;
  var refreshing = false;
  var again = false;

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = "status " + cls;
  }

  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(panels.dataset.panelsUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (html) { panels.innerHTML = html; panels.dataset.refreshed = String(Date.now()); })
      .catch(function () { setStatus("refresh failed", "down"); })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function addLog(ev) {
    var empty = log.querySelector(".muted");
    if (empty) { empty.remove(); }
    var li = document.createElement("li");
    li.className = "event";
    var when = document.createElement("time");
    when.textContent = ev.at || "";
    var what = document.createElement("code");
    what.textContent = ev.kind;
    li.appendChild(when);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(what);
    li.appendChild(document.createTextNode(ev.repo ? " " + ev.repo : ""));
    if (ev.data && ev.data.number) { li.appendChild(document.createTextNode("#" + ev.data.number)); }
    log.insertBefore(li, log.firstChild);
    while (log.children.length > MAX_LOG) { log.removeChild(log.lastChild); }
  }

  var source = new EventSource(panels.dataset.streamUrl);
  source.onopen = function () { setStatus("live", "live"); };
  source.onerror = function () { setStatus("reconnecting…", "down"); };
  source.onmessage = function (message) {
    var ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    if (!ev || typeof ev.kind !== "string") { return; }
    addLog(ev);
    // Several changes usually arrive together (one webhook, several updates): refresh once.
    clearTimeout(timer);
    timer = setTimeout(refresh, 200);
  };
})();
