// The dashboard's only script (ours, served by the app): live figures from the update feed.
// The server sends every update of the page's provinces (ANTQ_UPDATES) as a server-sent event. A page whose
// figures the feed carries as they are (2025 units, calendar year, one year) changes the ward's cells from the
// update itself at once; then every page asks for its content again (the totals, the map, the chart, and the
// views the feed does not carry: reporting years, ranges, pre-reform units), at most one request at a time.
(function () {
  "use strict";
  var body = document.body;
  var provinces = body.dataset.provinces || "";
  var carried = body.dataset.carried === "1";
  var year = Number(body.dataset.year);
  var sep = body.dataset.lang === "vi" ? "." : ",";
  var status = document.getElementById("live");
  var fetching = false;
  var again = false;

  function format(n) {
    var s = String(Math.abs(n)).replace(/\B(?=(\d{3})+(?!\d))/g, sep);
    return n < 0 ? "-" + s : s;
  }

  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    fetch(body.dataset.fragment, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        document.getElementById("content").innerHTML = html;
        body.dataset.refreshed = String(Number(body.dataset.refreshed || 0) + 1);
      })
      .catch(function () {})
      .then(function () {
        fetching = false;
        if (again) { again = false; refresh(); }
      });
  }

  function patch(update) {
    if (!carried || update.year !== year || update.period !== "calendar") return;
    var cells = document.querySelectorAll('[data-place="' + update.ward + '"][data-metric]');
    for (var i = 0; i < cells.length; i++) {
      var metric = cells[i].dataset.metric;
      var value = update.metrics[metric] || 0;
      if (cells[i].textContent !== format(value)) {
        cells[i].textContent = format(value);
        cells[i].classList.add("changed");
      }
    }
  }

  if (!provinces || !window.EventSource) return;
  var source = new EventSource("/updates?provinces=" + encodeURIComponent(provinces));
  source.addEventListener("ready", function () {
    body.dataset.live = "ready";
    if (status) status.textContent = status.textContent.replace("…", "✓");
  });
  source.addEventListener("update", function (e) {
    var update = JSON.parse(e.data);
    patch(update);
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
    refresh();
  });
  source.onerror = function () {
    body.dataset.live = "lost";
    if (status) status.textContent = status.textContent.replace("✓", "…");
  };
})();
