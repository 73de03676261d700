from __future__ import annotations

import re
import uuid
from urllib.parse import unquote

from django.http import HttpResponseBadRequest
from django.utils.cache import patch_cache_control

from clinical.audit import current_ip, current_request_id

_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Tags each request (and the audit events it causes) with X-Request-ID and the client address."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _SAFE.match(incoming) else uuid.uuid4().hex
        request.request_id = rid
        token = current_request_id.set(rid)
        # REMOTE_ADDR is the peer; behind a proxy, configure it to set the client address there.
        ip_token = current_ip.set(request.META.get("REMOTE_ADDR") or None)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
            current_ip.reset(ip_token)
        response["X-Request-ID"] = rid
        return response


# Everything the pages load comes from this site (Plotly.js included, so a closed hospital network works). Plotly
# sets inline styles on its SVG, hence 'unsafe-inline' for styles only; no inline or remote script runs.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
    "font-src 'self' data:", "connect-src 'self'", "object-src 'none'", "base-uri 'self'", "form-action 'self'",
    "frame-ancestors 'self'",
])
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"


class SecurityHeadersMiddleware:
    """Content-Security-Policy and Permissions-Policy on every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response


class PrivateResponseMiddleware:
    """`Cache-Control: private, no-store` on every response to a signed-in person and on every API response, so
    no browser, proxy or shared-computer history keeps a copy of patient data. Responses that declare themselves
    public (Plotly.js) and the health probes keep their own; static files never reach this (WhiteNoise)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/health/") or "public" in response.get("Cache-Control", ""):
            return response
        # After the view: a token-authenticated API request has its user only then (DRF sets it on the request).
        if request.path.startswith("/api/") or request.user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response


class RefuseNulBytesMiddleware:
    """400 for a NUL character in the path, the query string or a header, before any view or query sees it.

    PostgreSQL text cannot hold U+0000 (the driver raises, a 500), and no address, filter or header of this app
    has a use for it. Views validate their own input too; this is the guard for what one of them misses. Bodies
    are left to the forms and serializers (they refuse NUL in text fields).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        where = _nul_in(request)
        if where is None:
            return self.get_response(request)
        message = f"The request's {where} contains a NUL character."
        from clinical.api.errors import api_error_response, is_api_request

        if is_api_request(request):
            return api_error_response(400, message)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")


def _nul_in(request) -> str | None:
    if "\x00" in request.path_info:
        return "address"
    if "\x00" in unquote(request.META.get("QUERY_STRING", "")):
        return "query string"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and "\x00" in value:
            return f"{key[5:].replace('_', '-').title()} header"
    return None
