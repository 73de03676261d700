// Result page: draw the ECG paper, poll the job until it finishes, toggle evidence overlays.
(function () {
  "use strict";
  const plotEl = document.getElementById("ecg-plot");
  const data = JSON.parse(document.getElementById("ecg-plot-data").textContent);
  const medianEl = document.getElementById("median-plot");
  const medianData = document.getElementById("median-plot-data");
  const median = medianData ? JSON.parse(medianData.textContent) : null;
  // A sheet is built at a nominal width; fit it to its card and keep its height in proportion so that
  // the paper's squares stay square (the y axis is anchored to x at 10 mm/mV : 25 or 50 mm/s).
  // Where the result is one column (phones, tablets: the breakpoint of .result-grid in app.css) a sheet is
  // never drawn narrower than paper scale: it scrolls sideways inside its .ecg-scroll box, and dragging scrolls it
  // (Plotly's pan would take the touch and the page could not move).
  const oneColumn = window.matchMedia("(max-width: 1100px)");
  function drawSheet(el, box, payload, pan) {
    const fig = payload.figure;
    const ratio = fig.layout.height / fig.layout.width;
    const fit = function () {
      const w = Math.max(box.clientWidth, oneColumn.matches ? payload.paper_width : 0);
      return {width: w, height: Math.round(w * ratio), dragmode: pan && !oneColumn.matches ? "pan" : false};
    };
    Object.assign(fig.layout, fit());
    Plotly.newPlot(el, fig.data, fig.layout, {displaylogo: false, responsive: false,
      displayModeBar: pan ? "hover" : false, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"]});
    let pending = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { Plotly.relayout(el, fit()); }, 150);
    });
  }
  if (window.Plotly) {
    if (plotEl) drawSheet(plotEl, document.getElementById("ecg-scroll"), data, true);
    if (medianEl && median) drawSheet(medianEl, document.getElementById("median-scroll"), median, false);
  }

  const CYCLE_MIN_MS = 200;
  // Calipers: two clicks (or taps) on a sheet give the time between them, the rate that interval would make, and,
  // within one lead, the voltage between them. The clicks land on a transparent layer over the plot area while
  // calipers are on, so that Plotly's pan does not take them; x and y come from the axes' ranges.
  const caliperSets = [];
  function setupCalipers(el, payload) {
    const bar = document.querySelector('.caliper-bar[data-plot="' + el.id + '"]');
    if (!bar || !payload.calipers || !window.Plotly) return;
    const spec = payload.calipers;
    const toggle = bar.querySelector(".caliper-toggle");
    const clearBtn = bar.querySelector(".caliper-clear");
    const out = bar.querySelector(".caliper-readout");
    const baseShapes = (payload.figure.layout.shapes || []).slice();
    const baseNotes = (payload.figure.layout.annotations || []).slice();
    const layer = document.createElement("div");
    layer.className = "caliper-layer";
    layer.hidden = true;
    el.appendChild(layer);
    let points = [];

    function place() {
      const drag = el.querySelector(".nsewdrag");
      if (!drag) return;
      const a = drag.getBoundingClientRect(), b = el.getBoundingClientRect();
      Object.assign(layer.style, {left: (a.left - b.left) + "px", top: (a.top - b.top) + "px",
        width: a.width + "px", height: a.height + "px"});
    }
    function toData(ev) {
      const r = layer.getBoundingClientRect();
      const xr = el._fullLayout.xaxis.range, yr = el._fullLayout.yaxis.range;
      return {x: xr[0] + (ev.clientX - r.left) / r.width * (xr[1] - xr[0]),
              y: yr[1] - (ev.clientY - r.top) / r.height * (yr[1] - yr[0])};
    }
    function panelOf(p) {
      return spec.panels.find(function (q) { return p.x >= q.x0 && p.x < q.x1 && p.y >= q.y0 && p.y < q.y1; });
    }
    function draw() {
      const ink = "#c2185b";
      const shapes = baseShapes.slice(), notes = baseNotes.slice();
      points.forEach(function (p) {
        const q = panelOf(p) || {y0: p.y - 1.5, y1: p.y + 1.5};
        shapes.push({type: "line", x0: p.x, x1: p.x, y0: q.y0 + 0.1, y1: q.y1 - 0.1, layer: "above",
          line: {color: ink, width: 2}});
        shapes.push({type: "circle", xsizemode: "pixel", ysizemode: "pixel", xanchor: p.x, yanchor: p.y,
          x0: -5, x1: 5, y0: -5, y1: 5, layer: "above", line: {color: ink, width: 2}});
      });
      if (points.length === 2) {
        const [a, b] = points;
        shapes.push({type: "line", x0: a.x, x1: b.x, y0: a.y, y1: a.y, layer: "above",
          line: {color: ink, width: 2}});
        shapes.push({type: "line", x0: Math.min(a.x, b.x), x1: Math.max(a.x, b.x), y0: b.y, y1: b.y,
          layer: "above", line: {color: ink, width: 1.5, dash: "dot"}});
        const m = measure();
        if (m.ms !== null) {
          // The rate only where the interval could be a cycle (up to 300/min): a QRS is not a rate.
          const cycle = m.ms >= CYCLE_MIN_MS;
          notes.push({text: "<b>" + m.ms + " ms</b>" + (cycle ? " · " + m.rate + "/min" : ""), x: (a.x + b.x) / 2,
            y: Math.max(a.y, b.y), yanchor: "bottom", yshift: 6, showarrow: false, bgcolor: "rgba(255,255,255,0.92)",
            bordercolor: ink, borderpad: 2, font: {size: 14, color: ink, family: "Arial, sans-serif"}});
        }
      }
      Plotly.relayout(el, {shapes: shapes, annotations: notes});
    }
    function measure() {
      const [a, b] = points, pa = panelOf(a), pb = panelOf(b);
      const sameLead = pa && pb && pa === pb;
      const timed = sameLead || spec.shared_time;
      const ms = timed ? Math.round(Math.abs(b.x - a.x) * 1000) : null;
      return {ms: ms, rate: ms ? Math.round(60000 / ms) : null, mv: sameLead ? b.y - a.y : null,
              lead: sameLead ? pa.lead : null, leads: [pa && pa.lead, pb && pb.lead]};
    }
    function say() {
      if (!points.length) { out.textContent = toggle.getAttribute("aria-pressed") === "true"
        ? "Click or tap the first point." : ""; return; }
      if (points.length === 1) { out.textContent = "Click or tap the second point."; return; }
      const m = measure();
      const parts = [];
      if (m.ms !== null) parts.push("Δt " + m.ms + " ms", m.rate && m.ms >= CYCLE_MIN_MS ? "rate " + m.rate + "/min" : "");
      if (m.mv !== null) {
        const sign = m.mv >= 0 ? "+" : "−";
        parts.push("Δ " + sign + Math.abs(m.mv).toFixed(2) + " mV (" + sign +
          (Math.abs(m.mv) * spec.mm_per_mv).toFixed(1) + " mm) in " + m.lead);
      } else if (m.ms !== null) {
        parts.push("voltage: the points are in different leads");
      } else {
        parts.push("The two points are in different leads (" + (m.leads[0] || "outside") + ", " +
          (m.leads[1] || "outside") + "): place both on one beat");
      }
      out.textContent = parts.filter(Boolean).join(" · ");
    }
    function clear() { points = []; clearBtn.disabled = true; draw(); say(); }
    function setOn(on) {
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      el.classList.toggle("calipers-on", on);
      layer.hidden = !on;
      if (on) place();
      clear();
    }
    toggle.addEventListener("click", function () { setOn(toggle.getAttribute("aria-pressed") !== "true"); });
    clearBtn.addEventListener("click", clear);
    layer.addEventListener("click", function (ev) {
      if (points.length === 2) points = [];  // a third click starts a new measurement
      points.push(toData(ev));
      clearBtn.disabled = false;
      draw();
      say();
    });
    el.on("plotly_afterplot", function () { if (!layer.hidden) place(); });
    caliperSets.push({escape: function () {
      if (toggle.getAttribute("aria-pressed") !== "true") return;
      if (points.length) clear(); else setOn(false);
    }});
  }
  if (plotEl) setupCalipers(plotEl, data);
  if (medianEl && median) setupCalipers(medianEl, median);
  // Escape clears the points; pressed again, it puts the calipers away.
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") caliperSets.forEach(function (c) { c.escape(); });
  });

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
    window.pollJson(status.dataset.statusUrl, {first: 300, every: 700, retry: 2000, until: function (s) {
      if (s.state === "done" || s.state === "failed") { window.location.reload(); return true; }
      const label = document.getElementById("job-state-label");
      const stage = document.getElementById("job-stage");
      const bar = document.getElementById("job-progress");
      if (label) label.textContent = s.state === "running" ? "Running" : "Queued";
      if (stage) stage.textContent = s.stage;
      if (bar) bar.value = s.progress;
      return false;
    }});
  }
  // The result came before its evidence: wait for it, then load the page again with the overlays (the findings and
  // actions do not change; the browser keeps the scroll position). Not while the reader is in the middle of
  // something a reload would lose (a note being typed, a form field changed, calipers on): then a button says the
  // evidence is ready and loads it when they choose.
  function busy() {
    const typing = document.activeElement && /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    const filled = Array.prototype.some.call(document.querySelectorAll("form textarea, form input[type=text]"),
      function (el) { return el.value !== el.defaultValue; });
    const ticked = Array.prototype.some.call(document.querySelectorAll("form input[type=checkbox], form input[type=radio]"),
      function (el) { return el.checked !== el.defaultChecked; });
    const measuring = document.querySelector(".caliper-toggle[aria-pressed=true]") !== null;
    return typing || filled || ticked || measuring;
  }
  if (status && status.dataset.state === "done" && status.dataset.evidence === "pending") {
    window.pollJson(status.dataset.statusUrl, {first: 500, every: 1000, retry: 3000, until: function (s) {
      if (!s.evidence_state || s.evidence_state === "pending") return false;
      if (!busy()) { window.location.reload(); return true; }
      const note = document.getElementById("evidence-status");
      if (note) {
        note.textContent = "Evidence on the leads is ready. ";
        const show = document.createElement("button");
        show.type = "button";
        show.id = "evidence-show";
        show.textContent = "Show the evidence (reloads the page)";
        show.addEventListener("click", function () { window.location.reload(); });
        note.appendChild(show);
      }
      return true;
    }});
  }
})();
