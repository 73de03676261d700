// Monitoring pages: draw every Plotly figure embedded as <script type="application/json" data-figure="ID">,
// into the element with that id; poll a running report's status and reload when it finishes.
(function () {
  "use strict";
  document.querySelectorAll("script[data-figure]").forEach(function (node) {
    const el = document.getElementById(node.dataset.figure);
    if (!el || !window.Plotly) return;
    const fig = JSON.parse(node.textContent);
    fig.layout = Object.assign({autosize: true}, fig.layout);
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]});
  });

  const status = document.querySelector("[data-status-url]");
  if (!status) return;
  const bar = status.querySelector("progress");
  const stage = status.querySelector(".stage");
  window.pollJson(status.dataset.statusUrl, {first: 1000, every: 1000, retry: 3000, until: function (s) {
    if (bar) bar.value = s.progress;
    if (stage) stage.textContent = s.stage;
    if (s.state === "done" || s.state === "failed") { window.location.reload(); return true; }
    return false;
  }});
})();
