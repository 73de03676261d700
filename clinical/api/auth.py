"""Token authentication for the API (kept free of rest_framework.views: DRF imports it while loading)."""
from __future__ import annotations

import logging

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.throttling import SimpleRateThrottle

from clinical.tokens import api_token_check

log = logging.getLogger(__name__)


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer ecg_<prefix>_<secret>`; expired, revoked or unknown tokens get 401."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].decode().lower() not in ("bearer", "token"):
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Bearer <token>'.")
        token = api_token_check(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("The token is unknown, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class PerTokenThrottle(SimpleRateThrottle):
    """One budget per API token (per user for browser sessions)."""

    scope = "api"

    def allow_request(self, request, view) -> bool:
        # The counters live in Redis; while it is down, integrations keep working unthrottled rather than failing.
        from redis.exceptions import RedisError

        try:
            return super().allow_request(request, view)
        except (RedisError, ConnectionError, TimeoutError) as exc:
            log.warning("API throttle skipped, its cache is unavailable: %s", exc)
            return True

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        ident = f"t:{token.prefix}" if hasattr(token, "prefix") else (
            f"u:{request.user.pk}" if request.user and request.user.is_authenticated else self.get_ident(request))
        return self.cache_format % {"scope": self.scope, "ident": ident}
