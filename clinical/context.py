from __future__ import annotations

from django.conf import settings

NOTICES_SHOWN = 3


def site(request) -> dict:
    ctx = {"DEMO_MODE": settings.DEMO_MODE}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.has_perm("clinical.acknowledge_result"):
        from clinical.selectors import immediate_notices_for, open_alert_count, review_queue

        ctx["OPEN_ALERTS"] = open_alert_count()
        ctx["REVIEW_WAITING"] = review_queue().count()
        # Every page a reviewer opens shows the immediate results they have not opened yet.
        notices = list(immediate_notices_for(user=user)[:NOTICES_SHOWN + 1])
        ctx["IMMEDIATE_NOTICES"] = notices[:NOTICES_SHOWN]
        ctx["IMMEDIATE_NOTICES_MORE"] = (immediate_notices_for(user=user).count() - NOTICES_SHOWN
                                         if len(notices) > NOTICES_SHOWN else 0)
    return ctx
