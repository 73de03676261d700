"""Production: refuses to start without a secret key or with DEBUG on; secure cookies and HSTS."""
from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from ecgapp.settings.base import *  # noqa: F403
from ecgapp.settings.base import DEBUG, DEVELOPMENT_SECRET_KEY, SECRET_KEY

if SECRET_KEY == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production.")
DEMO_MODE = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
# Probes from the orchestrator speak plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]  # Prometheus scrapes too
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
