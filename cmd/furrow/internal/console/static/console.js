// Furrow console: draws the charts whose Chart.js configuration a page
// puts in a canvas's data-chart attribute (no inline scripts: the CSP
// forbids them), also in parts htmx swaps in.
(function () {
  "use strict";
  function draw(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (c) {
      if (c.dataset.drawn) return;
      c.dataset.drawn = "1";
      try {
        var cfg = JSON.parse(c.dataset.chart);
        Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
        new Chart(c, cfg);
      } catch (e) {
        c.insertAdjacentText("afterend", "chart: " + e);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (ev) { draw(ev.target); });
})();
