from __future__ import annotations

from django.conf import settings


def site(request) -> dict:
    return {"DEMO_MODE": settings.DEMO_MODE}
