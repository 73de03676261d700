"""Plotly figures for the fairness and drift pages, as JSON-ready dicts (drawn by static/monitoring/charts.js)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import plotly.graph_objects as go

from monitoring import fairness
from monitoring.models import DriftReport, FairnessComparison, FairnessMetric, FairnessReport

AXIS = "#7a8896"  # readable on the light and the dark theme
GRID = "rgba(122,136,150,0.25)"
# As django.utils.html.json_script: keep "</script>" and HTML out of JSON embedded in a page.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}
DIMENSION_NAMES = {k: v[:1].upper() + v[1:] for k, v in fairness.DIMENSION_NAMES.items()}
DIMENSION_COLOURS = {"sex": "#3b82c4", "age_band": "#c2772b", "sex_age": "#7b5fb3"}
METRIC_NAMES = {"urgent_rate": "Urgent recommendation rate", "tpr": "True-positive rate (reviewed results)",
                "fpr": "False-positive rate (reviewed results)", "auc": "Macro AUC on validation data (fold 9)"}
AXIS_RANGES = {"auc": {"range": [0.5, 1.0]}}  # AUC: 0.5 is chance, so the axis starts there
COMPARISON_NAMES = {"demographic_parity_ratio": "Demographic parity ratio",
                    "equal_opportunity_difference": "Equal-opportunity difference",
                    "false_positive_rate_difference": "False-positive-rate difference"}


def script_json(figure: dict) -> str:
    """JSON that is safe inside <script type="application/json">."""
    return json.dumps(figure).translate(_JSON_ESCAPES)


def layout(**kw) -> dict:
    base = dict(paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)", font=dict(color=AXIS, size=13),
                margin=dict(l=10, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.2))
    base.update(kw)
    return base


def axis(**kw) -> dict:
    return dict(gridcolor=GRID, zerolinecolor=GRID, linecolor=AXIS, tickcolor=AXIS, automargin=True) | kw


def _as_dict(fig: go.Figure) -> dict:
    return json.loads(fig.to_json())


def metric_forest(rows: Sequence[FairnessMetric], metric: str) -> dict | None:
    """Each group's rate as a point with its 95% CI, one colour per dimension; small groups are left out."""
    rows = [r for r in rows if r.metric == metric and r.status == FairnessMetric.Status.OK]
    if not rows:
        return None
    fig = go.Figure()
    order = []
    for dim in DIMENSION_NAMES:
        part = [r for r in rows if r.dimension == dim]
        if not part:
            continue
        labels = [f"{r.group}" for r in part]
        order += labels
        fig.add_trace(go.Scatter(
            x=[r.value for r in part], y=labels, mode="markers", name=DIMENSION_NAMES[dim],
            marker=dict(size=10, color=DIMENSION_COLOURS[dim]),
            error_x=dict(type="data", symmetric=False, array=[r.ci_high - r.value for r in part],
                         arrayminus=[r.value - r.ci_low for r in part], color=DIMENSION_COLOURS[dim], thickness=2),
            customdata=[[r.n, r.ci_low, r.ci_high] for r in part],
            hovertemplate="%{y}: %{x:.3f} (95% CI %{customdata[1]:.3f}–%{customdata[2]:.3f}), n = %{customdata[0]}"
                          "<extra></extra>"))
    x_range = AXIS_RANGES.get(metric, {"rangemode": "tozero"})
    fig.update_layout(**layout(height=max(220, 28 * len(order) + 90),
                                xaxis=axis(title=METRIC_NAMES[metric], **x_range),
                                yaxis=axis(categoryorder="array", categoryarray=list(reversed(order)))))
    return _as_dict(fig)


def comparison_trend(reports: Iterable[FairnessReport], metric: str) -> dict | None:
    """A disparity metric over the past reports, one line per dimension with CI error bars and the threshold."""
    points: dict[str, list[FairnessComparison]] = {}
    threshold = None
    times = {}
    for report in reports:
        for c in report.comparisons.all():
            if c.metric == metric and c.value is not None:
                points.setdefault(c.dimension, []).append(c)
                times[c.pk] = report.created_at
                threshold = c.threshold
    if not points:
        return None
    fig = go.Figure()
    for dim, comps in points.items():
        comps.sort(key=lambda c: times[c.pk])
        fig.add_trace(go.Scatter(
            x=[times[c.pk].isoformat() for c in comps], y=[c.value for c in comps], mode="lines+markers",
            name=DIMENSION_NAMES.get(dim, dim), line=dict(color=DIMENSION_COLOURS.get(dim)),
            error_y=dict(type="data", symmetric=False, array=[(c.ci_high or c.value) - c.value for c in comps],
                         arrayminus=[c.value - (c.ci_low or c.value) for c in comps], thickness=1.5)))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="#b00020", dash="dash"), annotation_text=f"threshold {threshold:g}",
                      annotation_font_color="#b00020")
    fig.update_layout(**layout(height=320, legend=dict(orientation="h", y=-0.25), xaxis=axis(),
                               yaxis=axis(title=COMPARISON_NAMES[metric])))
    return _as_dict(fig)


def drift_trend(reports: Sequence[DriftReport]) -> dict | None:
    done = [r for r in reports if r.drift_share is not None]
    if not done:
        return None
    done.sort(key=lambda r: r.created_at)
    fig = go.Figure(go.Scatter(
        x=[r.created_at.isoformat() for r in done], y=[r.drift_share for r in done], mode="lines+markers",
        customdata=[[r.n_drifted, r.n_features, r.n_compared] for r in done], line=dict(color="#3b82c4"),
        hovertemplate="%{customdata[0]} of %{customdata[1]} features drifted over %{customdata[2]} predictions"
                      "<extra></extra>"))
    fig.update_layout(**layout(height=260, xaxis=axis(),
                                yaxis=axis(title="Share of features drifted", range=[0, 1])))
    return _as_dict(fig)
