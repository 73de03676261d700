"""Template helpers for the monitoring pages."""
from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from monitoring.charts import script_json

register = template.Library()


@register.simple_tag
def figure(figure_dict: dict | None, element_id: str):
    """A Plotly figure as <script type="application/json" data-figure="ID">, drawn by monitoring/charts.js."""
    if not figure_dict:
        return ""
    payload = mark_safe(script_json(figure_dict))
    return format_html('<div class="chart" id="{}"></div><script type="application/json" data-figure="{}">{}</script>',
                       element_id, element_id, payload)


@register.filter
def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key, key)
