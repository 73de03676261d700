"""The model card page: what the deployed ensemble is for, what it was trained on, how well it does, where it is weak.

Everything shown comes from the weights folder (settings.ECG_WEIGHTS_DIR): ``manifest.json`` (model, data, calibration),
``fold9_report.json`` (per-class and per-subgroup metrics) and the fold-9 monitoring reference (calibration curves).
The parsed files and the curves are cached per process by (path, mtime, size): the manifest is ~2 MB.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import plotly.graph_objects as go
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe
from plotly.subplots import make_subplots

from mlcore.labels import SUPERCLASS_NAMES, SUPERCLASSES
from mlcore.reference import REFERENCE_FILE, Reference
from monitoring.calibration import calibration_active
from monitoring.charts import AXIS, DIMENSION_COLOURS, DIMENSION_NAMES, axis, layout, script_json

MANIFEST_FILE = "manifest.json"
REPORT_FILE = "fold9_report.json"
N_BINS = 10
LOW_TPR = 0.6  # a subgroup's true-positive rate below this is listed as a limit
FEW_POSITIVES = 30  # fewer positives than this: the rate is too uncertain to read much into
LOW_STATEMENT_AUC = 0.8

CLASS_COLOURS = {"NORM": "#3b82c4", "MI": "#d1495b", "STTC": "#c2772b", "CD": "#7b5fb3", "HYP": "#2a9d8f"}
SEX_NAMES = {"male": "Male", "female": "Female"}


T = TypeVar("T")
_cache: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}
_cache_lock = threading.Lock()


def _cached(path: Path, kind: str, build: Callable[[Path], T]) -> T | None:
    """build(path), computed once per (path, mtime, size) in this process; None when the file is not there."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key, stamp = (str(path.resolve()), kind), (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = build(path)
    with _cache_lock:
        _cache[key] = (stamp, value)
    return value


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_manifest(weights_dir: str | Path) -> dict | None:
    return _cached(Path(weights_dir) / MANIFEST_FILE, "json", _read_json)


def load_report(weights_dir: str | Path) -> dict | None:
    return _cached(Path(weights_dir) / REPORT_FILE, "json", _read_json)


# --- calibration -----------------------------------------------------------------------------------------------


def reliability_curve(probability: np.ndarray, label: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Reliability curve of one class: ``n_bins`` equal-width bins of the predicted probability on [0, 1].

    Returns per bin (empty bins included, their means None): ``lower``/``upper`` bin edges, ``count``,
    ``predicted`` (mean predicted probability) and ``observed`` (fraction of positives). A probability of exactly 1
    falls in the last bin.
    """
    p = np.asarray(probability, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probability {p.shape} and label {y.shape} differ in shape")
    keep = np.isfinite(p)
    p, y = np.clip(p[keep], 0.0, 1.0), y[keep]
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "lower": [float(e) for e in edges[:-1]],
        "upper": [float(e) for e in edges[1:]],
        "count": [int(c) for c in count],
        "predicted": [float(s / c) if c else None for s, c in zip(sum_p, count)],
        "observed": [float(s / c) if c else None for s, c in zip(sum_y, count)],
    }


def calibration_curves(ref: Reference, n_bins: int = N_BINS) -> dict[str, dict[str, list]]:
    """Per superclass reliability curve over the labelled fold-9 records (the rows the benchmark scores)."""
    keep = np.asarray(ref.has_label, dtype=bool)
    p, y = ref.probabilities[keep], ref.labels[keep]
    return {c: reliability_curve(p[:, j], y[:, j], n_bins) for j, c in enumerate(SUPERCLASSES)}


def load_calibration_curves(weights_dir: str | Path) -> dict[str, dict[str, list]] | None:
    return _cached(Path(weights_dir) / REFERENCE_FILE, "curves", lambda path: calibration_curves(Reference.load(path)))


# --- figures ---------------------------------------------------------------------------------------------------


def _layout(**kw) -> dict:
    return layout(**({"margin": dict(l=10, r=20, t=40, b=40), "showlegend": False} | kw))


def _marker_size(n: int, counts: list[int]) -> float:
    """Points grow with their bin's record count (by area), so sparse bins look as uncertain as they are."""
    return round(5 + 9 * (n / max(max(counts), 1)) ** 0.5, 1)


def calibration_figure(curves: dict[str, dict[str, list]]) -> dict:
    """One small panel per superclass: observed frequency against mean predicted probability, with the diagonal."""
    classes = list(curves)
    fig = make_subplots(rows=1, cols=len(classes), shared_yaxes=True, horizontal_spacing=0.025,
                        subplot_titles=[f"{c} · {SUPERCLASS_NAMES.get(c, c)}" for c in classes])
    for col, c in enumerate(classes, start=1):
        curve = curves[c]
        bins = [i for i, n in enumerate(curve["count"]) if n]
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfect calibration", hoverinfo="skip",
                                 line=dict(color=AXIS, dash="dash", width=1.5)), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=[curve["predicted"][i] for i in bins], y=[curve["observed"][i] for i in bins],
            mode="lines+markers", name=c, line=dict(color=CLASS_COLOURS.get(c, AXIS), width=2.5),
            marker=dict(size=[_marker_size(curve["count"][i], curve["count"]) for i in bins],
                        color=CLASS_COLOURS.get(c, AXIS), line=dict(width=0)),
            customdata=[[curve["count"][i], curve["lower"][i], curve["upper"][i]] for i in bins],
            hovertemplate=(f"{c}<br>bin %{{customdata[1]:.1f}}–%{{customdata[2]:.1f}}: %{{customdata[0]}} records"
                           "<br>mean predicted %{x:.3f}<br>observed %{y:.3f}<extra></extra>")), row=1, col=col)
        fig.update_xaxes(axis(range=[0, 1], dtick=0.5, constrain="domain", title_text="predicted"), row=1, col=col)
        fig.update_yaxes(axis(range=[0, 1], dtick=0.25, title_text="observed" if col == 1 else None), row=1, col=col)
    fig.update_annotations(font=dict(color=AXIS, size=13))
    fig.update_layout(**_layout(height=320))
    return json.loads(fig.to_json())


def subgroup_figure(report: dict) -> dict | None:
    """Macro AUC per sex and age band (fold 9) as bars from 0.5 (chance), with the overall macro AUC as a line."""
    groups = report.get("subgroups") or {}
    fig = go.Figure()
    order: list[str] = []
    for dim, name in DIMENSION_NAMES.items():
        rows = [(g, v) for g, v in (groups.get(dim) or {}).items() if v.get("macro_auc") is not None]
        if not rows:
            continue
        labels = [f"{SEX_NAMES.get(g, g)} (n={v['n']})" for g, v in rows]
        order += labels
        fig.add_trace(go.Bar(
            x=[v["macro_auc"] - 0.5 for _, v in rows], base=0.5, y=labels, orientation="h", name=name,
            marker=dict(color=DIMENSION_COLOURS[dim]), text=[f"{v['macro_auc']:.3f}" for _, v in rows],
            textposition="inside", insidetextanchor="end", textfont=dict(color="#ffffff", size=13),
            customdata=[v["macro_auc"] for _, v in rows],
            hovertemplate="%{y}: macro AUC %{customdata:.3f}<extra>" + name + "</extra>"))
    if not order:
        return None
    overall = (report.get("superclass") or {}).get("macro_auc")
    shapes, annotations = [], []
    if overall is not None:
        shapes.append(dict(type="line", x0=overall, x1=overall, yref="paper", y0=0, y1=1,
                           line=dict(color=AXIS, dash="dot", width=1.5)))
        annotations.append(dict(x=overall, y=1.02, yref="paper", text=f"all: {overall:.3f}", showarrow=False,
                                xanchor="center", yanchor="bottom", font=dict(color=AXIS, size=12)))
    fig.update_layout(**_layout(
        height=80 + 36 * len(order), bargap=0.3, shapes=shapes, annotations=annotations,
        margin=dict(l=10, r=20, t=30, b=40), font=dict(color=AXIS, size=14),
        xaxis=axis(range=[0.5, 1.0], dtick=0.1, title="Macro AUC, superclasses (0.5 = chance)"),
        yaxis=axis(categoryorder="array", categoryarray=list(reversed(order)))))
    return json.loads(fig.to_json())


def figure_json(figure: dict | None) -> SafeString | None:
    """The figure as JSON that is safe inside <script type="application/json"> (escaped as json_script does)."""
    if figure is None:
        return None
    return mark_safe(script_json(figure))


# --- tables and computed limits --------------------------------------------------------------------------------


def _f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def class_rows(report: dict, manifest: dict | None) -> list[dict]:
    """One row per superclass: fold-9 AUC, ECE, F1 at its threshold, the threshold, prevalence and temperature."""
    sc = report.get("superclass") or {}
    temperature = dict(zip(SUPERCLASSES, ((manifest or {}).get("calibration", {}).get("superclass", {})
                                          .get("temperature") or [])))
    rows = []
    for c in SUPERCLASSES:
        rows.append({"code": c, "name": SUPERCLASS_NAMES.get(c, c),
                     "auc": _f3(sc.get("per_class_auc", {}).get(c)), "ece": _f3(sc.get("ece", {}).get(c)),
                     "f1": _f3(sc.get("f1_at_threshold", {}).get(c)), "threshold": _f3(sc.get("thresholds", {}).get(c)),
                     "prevalence": _pct(sc.get("prevalence", {}).get(c)),
                     "temperature": "–" if c not in temperature else f"{temperature[c]:.2f}"})
    return rows


def subgroup_rows(report: dict) -> list[dict]:
    """One row per sex and age band: n, macro AUC and, per class, the true-positive rate at the threshold."""
    rows = []
    for dim, dim_name in DIMENSION_NAMES.items():
        for group, v in ((report.get("subgroups") or {}).get(dim) or {}).items():
            tpr, pos = v.get("tpr_at_threshold") or {}, v.get("positives") or {}
            cells = []
            for c in SUPERCLASSES:
                rate, n_pos = tpr.get(c), pos.get(c)
                cells.append({"code": c, "tpr": _f3(rate), "positives": n_pos,
                              "low": rate is not None and rate < LOW_TPR,
                              "few": n_pos is not None and n_pos < FEW_POSITIVES})
            rows.append({"dimension": dim_name, "group": SEX_NAMES.get(group, group), "n": v.get("n"),
                         "macro_auc": _f3(v.get("macro_auc")), "cells": cells})
    return rows


def computed_limits(report: dict, manifest: dict | None) -> list[str]:
    """Weak spots read from the fold-9 numbers (not hard-coded): weakest class, subgroup gaps, weak statements."""
    out: list[str] = []
    sc = report.get("superclass") or {}
    auc, f1, ece = sc.get("per_class_auc") or {}, sc.get("f1_at_threshold") or {}, sc.get("ece") or {}
    if auc:
        worst = min(auc, key=auc.get)
        text = (f"{worst} ({SUPERCLASS_NAMES.get(worst, worst)}) has the lowest AUC of the superclasses "
                f"({auc[worst]:.3f})")
        if f1:
            worst_f1 = min(f1, key=f1.get)
            text += (f" and the lowest F1 at its threshold ({f1[worst_f1]:.3f})" if worst_f1 == worst
                     else f"; {worst_f1} has the lowest F1 at its threshold ({f1[worst_f1]:.3f})")
        prevalence = (sc.get("prevalence") or {}).get(worst)
        if prevalence is not None:
            text += f"; it is present in {100 * prevalence:.1f} % of fold-9 records"
        out.append(text + ".")
    if ece:
        worst = max(ece, key=ece.get)
        out.append(f"{worst} is the least well calibrated class (ECE {ece[worst]:.3f}); see the curves below.")

    groups = report.get("subgroups") or {}
    for dim, dim_name in DIMENSION_NAMES.items():
        g = {k: v for k, v in (groups.get(dim) or {}).items() if v.get("macro_auc") is not None}
        if len(g) > 1:
            lo, hi = min(g, key=lambda k: g[k]["macro_auc"]), max(g, key=lambda k: g[k]["macro_auc"])
            out.append(f"{dim_name}: macro AUC is lowest for {SEX_NAMES.get(lo, lo).lower()} "
                       f"({g[lo]['macro_auc']:.3f}, n = {g[lo]['n']}) and highest for {SEX_NAMES.get(hi, hi).lower()} "
                       f"({g[hi]['macro_auc']:.3f}, n = {g[hi]['n']}); "
                       f"difference {g[hi]['macro_auc'] - g[lo]['macro_auc']:.3f}.")
    low = []
    for dim in DIMENSION_NAMES:
        for group, v in (groups.get(dim) or {}).items():
            for c, rate in (v.get("tpr_at_threshold") or {}).items():
                if rate is not None and rate < LOW_TPR:
                    low.append((rate, c, SEX_NAMES.get(group, group), (v.get("positives") or {}).get(c)))
    if low:
        parts = []
        for rate, c, group, n_pos in sorted(low):
            few = " — few positives, uncertain" if n_pos is not None and n_pos < FEW_POSITIVES else ""
            parts.append(f"{c} in {group} ({rate:.2f}, {n_pos} positives{few})")
        out.append(f"Sensitivity at the threshold is below {LOW_TPR:.1f} for: " + "; ".join(parts)
                   + ". More findings of these kinds are missed in these groups.")

    st = (report.get("statements") or {}).get("per_label_auc") or {}
    weak = sorted((a, code) for code, a in st.items() if a is not None and a < LOW_STATEMENT_AUC)
    if weak:
        desc = ((manifest or {}).get("labels") or {}).get("descriptions") or {}
        names = ", ".join(f"{code} ({desc[code]}, {a:.2f})" if code in desc else f"{code} ({a:.2f})"
                          for a, code in weak)
        out.append(f"{len(weak)} of {len(st)} statements have a fold-9 AUC below {LOW_STATEMENT_AUC:.1f}: {names}. "
                   "Treat these statements as weak hints only.")
    return out


def calibration_table(curves: dict[str, dict[str, list]]) -> list[dict]:
    """The curves as numbers, one row per bin: per class the record count and the observed frequency."""
    first = next(iter(curves.values()))
    return [{"range": f"{lo:.1f}–{hi:.1f}",
             "cells": [{"count": v["count"][i], "observed": _f3(v["observed"][i]), "predicted": _f3(v["predicted"][i])}
                       for v in curves.values()]}
            for i, (lo, hi) in enumerate(zip(first["lower"], first["upper"]))]


def population(reference: dict) -> dict | None:
    """Age and sex of the fold-9 reference records (as summarised in the manifest)."""
    if not reference:
        return None
    age, sex = reference.get("age") or {}, reference.get("sex") or {}
    edges, hist = age.get("hist_edges") or [], age.get("hist") or []
    bands = [(f"{lo}–{hi - 1}", n) for lo, hi, n in zip(edges[:-1], edges[1:], hist)]
    if bands and edges[-1] > 90:  # PTB-XL codes ages of 90 and over as 90
        bands[-1] = (f"{edges[-2]}+", bands[-1][1])
    n = reference.get("n_records")
    unknown = n - sum(hist) if n is not None and hist else 0  # records without an age are in no histogram bin
    return {"n": n, "age_mean": age.get("mean"), "age_std": age.get("std"), "age_unknown": max(unknown, 0),
            "age_bands": bands, "male": sex.get("male"), "female": sex.get("female")}


def _date(iso: str | None) -> str:
    return (iso or "").replace("T", " ").replace("Z", " UTC") or "–"


def model_card_context(weights_dir: str | Path) -> dict:
    """Everything the template shows; the parts whose file is missing are None (the page says so)."""
    manifest, report = load_manifest(weights_dir), load_report(weights_dir)
    ctx: dict[str, Any] = {"manifest": manifest, "report": report, "weights_dir": str(weights_dir),
                           "low_tpr": f"{LOW_TPR:.1f}", "few_positives": FEW_POSITIVES}
    if manifest is not None:
        members = manifest.get("members") or []
        labels = manifest.get("labels") or {}
        ctx.update({
            "members": [{**m, "sha256_short": (m.get("sha256") or "")[:12]} for m in members],
            "architecture": members[0].get("config") if members else None,
            "parameters_total": sum(int(m.get("parameters") or 0) for m in members),
            "n_superclasses": len(labels.get("superclasses") or SUPERCLASSES),
            "n_statements": len(labels.get("statements") or []),
            "created": _date(manifest.get("created_at")),
            "git_commit_short": (manifest.get("git_commit") or "")[:12],
            "git_dirty": (manifest.get("git_commit") or "").endswith("+dirty"),
            "metrics_note": (manifest.get("metrics_fold9") or {}).get("note"),
            "training_data": manifest.get("training_data") or {},
            "input": manifest.get("input") or {},
            "calibration": manifest.get("calibration") or {},
            "population": population(manifest.get("reference") or {}),
        })
    if report is not None:
        sc = report.get("superclass") or {}
        ci = sc.get("macro_auc_ci90") or [None, None]
        ctx.update({
            "class_rows": class_rows(report, manifest),
            "subgroup_rows": subgroup_rows(report),
            "limits": computed_limits(report, manifest),
            "macro_auc": _f3(sc.get("macro_auc")), "macro_auc_ci": f"{_f3(ci[0])}–{_f3(ci[1])}",
            "statements_macro_auc": _f3((report.get("statements") or {}).get("macro_auc")),
            "statements_scored": (report.get("statements") or {}).get("n_labels_scored"),
            "subgroup_figure": _cached(Path(weights_dir) / REPORT_FILE, "subgroup-figure",
                                       lambda _: figure_json(subgroup_figure(report))),
        })
    try:
        curves = load_calibration_curves(weights_dir)
    except (OSError, KeyError, ValueError):
        curves = None
    if curves is not None:
        ctx["calibration_figure"] = _cached(Path(weights_dir) / REFERENCE_FILE, "calibration-figure",
                                            lambda _: figure_json(calibration_figure(curves)))
        ctx["calibration_classes"] = list(curves)
        ctx["calibration_bins"] = calibration_table(curves)
    return ctx


@login_required
@permission_required("clinical.view_monitoring", raise_exception=True)
def model_card(request: HttpRequest) -> HttpResponse:
    from monitoring import registry

    ctx = model_card_context(registry.serving_weights_dir())
    ctx["model_versions"], ctx["model_history"] = registry.model_versions(), registry.model_history()
    manifest = ctx.get("manifest")
    ctx["calibration_in_force"] = calibration_active(model_version=manifest["model_version"]) if manifest else None
    return render(request, "monitoring/model_card.html", ctx)
