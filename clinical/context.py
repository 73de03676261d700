from __future__ import annotations

from django.conf import settings


def site(request) -> dict:
    ctx = {"DEMO_MODE": settings.DEMO_MODE}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.has_perm("clinical.acknowledge_result"):
        from clinical.selectors import open_alert_count, review_queue

        ctx["OPEN_ALERTS"] = open_alert_count()
        ctx["REVIEW_WAITING"] = review_queue().count()
    return ctx
