/* netdiag report: sortable tables and a self-check that every chart drew its marks.
   Inline, no network. Results are left as attributes so a headless browser's DOM dump shows them:
   each svg.chart gets data-rendered (true when every expected mark has a size) and data-marks-drawn,
   each sortable table data-sortable=ready, and the root element data-report-script=done,
   data-charts-rendered=ok/total and, on any script error, data-js-errors. */
(function () {
  "use strict";
  var root = document.documentElement;
  var errors = [];
  function noteError(msg) {
    errors.push(String(msg));
    root.setAttribute("data-js-errors", errors.join(" | "));
  }
  window.addEventListener("error", function (e) { noteError(e.message); });

  function cellKey(td) {
    if (td.hasAttribute("data-v")) {
      var v = td.getAttribute("data-v");
      return v === "" ? -Infinity : parseFloat(v);
    }
    return td.textContent.trim().toLowerCase();
  }

  function makeSortable(table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head || !table.tBodies.length) { return; }
    var ths = Array.prototype.slice.call(head.cells);
    ths.forEach(function (th, i) {
      th.setAttribute("title", "click to sort");
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        ths.forEach(function (o) { o.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellKey(a.cells[i]), y = cellKey(b.cells[i]);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
    table.setAttribute("data-sortable", "ready");
  }

  function checkCharts() {
    var charts = document.querySelectorAll("svg.chart");
    var ok = 0;
    Array.prototype.forEach.call(charts, function (svg) {
      var drawn = 0;
      Array.prototype.forEach.call(svg.querySelectorAll(".mark"), function (m) {
        var b = m.getBBox();
        if (b.width > 0 || b.height > 0) { drawn += 1; }
      });
      var expected = parseInt(svg.getAttribute("data-marks-expected") || "0", 10);
      var good = expected > 0 && drawn === expected;
      svg.setAttribute("data-marks-drawn", String(drawn));
      svg.setAttribute("data-rendered", good ? "true" : "false");
      if (good) { ok += 1; }
    });
    root.setAttribute("data-charts-rendered", ok + "/" + charts.length);
  }

  function run() {
    try {
      Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
      checkCharts();
      root.setAttribute("data-report-script", "done");
    } catch (e) {
      noteError(e && e.message ? e.message : e);
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", run);
  } else {
    run();
  }
})();
