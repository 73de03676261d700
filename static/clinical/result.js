// Result page: draw the ECG paper, poll the job until it finishes, toggle evidence overlays.
(function () {
  "use strict";
  const plotEl = document.getElementById("ecg-plot");
  const data = JSON.parse(document.getElementById("ecg-plot-data").textContent);
  const fig = data.figure;
  // The figure is built at a nominal width; fit it to its card and keep its height in proportion so that
  // the paper's squares stay square (the y axis is anchored to x at 10 mm/mV : 25 mm/s).
  // Where the result is one column (phones, tablets: the breakpoint of .result-grid in app.css) the sheet is
  // never drawn narrower than paper scale: it scrolls sideways inside #ecg-scroll, and dragging scrolls it
  // (Plotly's pan would take the touch and the page could not move).
  const box = document.getElementById("ecg-scroll");
  const ratio = fig.layout.height / fig.layout.width;
  const oneColumn = window.matchMedia("(max-width: 1100px)");
  function fit() {
    const w = Math.max(box.clientWidth, oneColumn.matches ? data.paper_width : 0);
    return {width: w, height: Math.round(w * ratio), dragmode: oneColumn.matches ? false : "pan"};
  }
  if (plotEl && window.Plotly) {
    Object.assign(fig.layout, fit());
    Plotly.newPlot(plotEl, fig.data, fig.layout, {displaylogo: false, responsive: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]});
    let pending = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { Plotly.relayout(plotEl, fit()); }, 150);
    });
  }

  const caption = document.getElementById("overlay-caption");
  let shown = null;
  function setOverlay(key) {
    const traces = data.overlay_traces || {};
    const all = Object.values(traces).flat();
    if (all.length) Plotly.restyle(plotEl, {visible: false}, all);
    if (key && traces[key]) Plotly.restyle(plotEl, {visible: true}, traces[key]);
    shown = key;
    document.querySelectorAll(".overlay-toggle").forEach(function (b) {
      b.setAttribute("aria-pressed", b.dataset.overlay === key ? "true" : "false");
    });
    if (caption) {
      const rel = (data.overlay_lead_relevance || {})[key];
      if (key && rel) {
        caption.textContent = "Evidence by lead: " + rel.slice(0, 5).map(function (r) {
          return r.lead + " " + Math.round(r.share * 100) + "%";
        }).join(" · ");
        caption.hidden = false;
      } else {
        caption.hidden = true;
      }
    }
  }
  function reportViewed(key) {
    const status = document.getElementById("job-status");
    const token = document.querySelector("#csrf-holder input[name=csrfmiddlewaretoken]");
    if (!status || !token || !key) return;
    const body = new URLSearchParams({overlay: key});
    fetch(status.dataset.overlayUrl, {method: "POST", body: body, credentials: "same-origin",
      headers: {"X-CSRFToken": token.value}}).catch(function () { /* auditing must not break reading */ });
  }
  document.querySelectorAll(".overlay-toggle").forEach(function (b) {
    b.addEventListener("click", function () {
      const key = shown === b.dataset.overlay ? null : b.dataset.overlay;
      setOverlay(key);
      reportViewed(key);
    });
  });

  // The overview strip (lead II over the whole record, the analysed 10 s shaded): clicking it puts the window there,
  // centred on the click, in the "start at" field and on the strip; the person still presses the button.
  const overviewEl = document.getElementById("overview-plot");
  const overviewData = document.getElementById("overview-data");
  if (overviewEl && overviewData && window.Plotly) {
    const ov = JSON.parse(overviewData.textContent);
    const input = document.getElementById("id_window_start_s");
    const latest = Math.max(0, Math.floor((ov.record_s - ov.window_s) * 10) / 10);
    Plotly.newPlot(overviewEl, ov.figure.data, ov.figure.layout, {displayModeBar: false, responsive: true});
    const place = function (start) {
      const shapes = ov.figure.layout.shapes.slice(0, 1);
      const notes = ov.figure.layout.annotations.slice();
      if (Math.abs(start - ov.start_s) > 0.05) {
        shapes.push({type: "rect", xref: "x", yref: "paper", x0: start, x1: start + ov.window_s, y0: 0, y1: 1,
          fillcolor: "rgba(179, 92, 0, 0.14)", line: {color: "#b35c00", width: 2, dash: "dash"}});
        notes.push({text: "<b>To analyse</b>", x: start, xref: "x", xanchor: "left", xshift: 4, y: 0, yref: "paper",
          yanchor: "bottom", yshift: 3, showarrow: false, bgcolor: "rgba(255, 255, 255, 0.9)",
          font: {size: 13, color: "#8a4700", family: "Arial, sans-serif"}});
      }
      Plotly.relayout(overviewEl, {shapes: shapes, annotations: notes});
    };
    if (input) {
      overviewEl.on("plotly_click", function (ev) {
        if (!ev.points || !ev.points.length) return;
        const start = Math.min(latest, Math.max(0, Math.round((ev.points[0].x - ov.window_s / 2) * 10) / 10));
        input.value = start;
        place(start);
        input.focus();
      });
      input.addEventListener("input", function () {
        const v = parseFloat(input.value);
        if (isFinite(v) && v >= 0 && v <= latest) place(v);
      });
    }
  }

  const status = document.getElementById("job-status");
  if (status && (status.dataset.state === "queued" || status.dataset.state === "running")) {
    const url = status.dataset.statusUrl;
    const poll = function () {
      fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.state === "done" || s.state === "failed") { window.location.reload(); return; }
          const label = document.getElementById("job-state-label");
          const stage = document.getElementById("job-stage");
          const bar = document.getElementById("job-progress");
          if (label) label.textContent = s.state === "running" ? "Running" : "Queued";
          if (stage) stage.textContent = s.stage;
          if (bar) bar.value = s.progress;
          window.setTimeout(poll, 700);
        })
        .catch(function () { window.setTimeout(poll, 2000); });
    };
    window.setTimeout(poll, 300);
  }
})();
