from __future__ import annotations


def alerts(request) -> dict:
    """Recent monitoring alerts, for the people who must see them: compliance staff and reviewers."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    if not (user.has_perm("clinical.view_monitoring") or user.has_perm("clinical.acknowledge_result")):
        return {}
    from monitoring.selectors import alerts_current

    recent = alerts_current(days=1)
    return {"MONITORING_ALERTS": recent, "MONITORING_ALERTS_SHOWN": recent[:2],
            "MONITORING_ALERTS_MORE": max(0, len(recent) - 2)}
