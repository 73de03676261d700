// Reading page: this ECG and the prior one drawn side by side, each fitted to its half of the card at the same
// width, so that both sheets share one scale (the figure keeps 10 mm/mV : 25 mm/s by its aspect ratio).
(function () {
  "use strict";
  if (!window.Plotly) return;
  function draw(id, dataId) {
    const el = document.getElementById(id);
    const script = document.getElementById(dataId);
    if (!el || !script) return;
    const fig = JSON.parse(script.textContent).figure;
    const ratio = fig.layout.height / fig.layout.width;
    const fit = function () {
      const w = el.parentElement.clientWidth;
      return {width: w, height: Math.round(w * ratio)};
    };
    Object.assign(fig.layout, fit());
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: false, displayModeBar: false});
    let pending = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { Plotly.relayout(el, fit()); }, 150);
    });
  }
  draw("plot-current", "plot-current-data");
  draw("plot-prior", "plot-prior-data");
})();
