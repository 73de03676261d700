"""Who may read the operational endpoints: /metrics (web, and a worker's metrics port) and the API schema.

/metrics tells how busy the clinic is (the urgent queue, predictions per class) and the schema maps the API, so
neither is public. /metrics: a logged-in user with `clinical.view_monitoring`, a client address in
settings.ECG_METRICS_ALLOW (ECGAPP_METRICS_ALLOW), or Prometheus with `Authorization: Bearer
<ECGAPP_METRICS_TOKEN>`. The schema: any authenticated API user (session or API token), or an allowed address.
"""
from __future__ import annotations

import hmac
import ipaddress
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from rest_framework.permissions import BasePermission

METRICS_PERMISSION = "clinical.view_monitoring"
_REFUSED = b"Metrics need a logged-in user with the monitoring permission, an allowed address or the metrics token.\n"


def scrape_allowed(*, remote_addr: str | None, authorization: str | None) -> bool:
    """True when the peer's address is in ECG_METRICS_ALLOW or the request carries the metrics bearer token."""
    token = settings.ECG_METRICS_TOKEN
    if token and authorization:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        addr = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:  # "::ffff:10.0.0.5" on a dual-stack socket
        addr = addr.ipv4_mapped
    return any(addr in net for net in settings.ECG_METRICS_ALLOW)


def _allowed(request: HttpRequest) -> bool:
    return scrape_allowed(remote_addr=request.META.get("REMOTE_ADDR"),
                          authorization=request.META.get("HTTP_AUTHORIZATION"))


def metrics(request: HttpRequest) -> HttpResponse:
    """django_prometheus's /metrics, for the readers above only."""
    if _allowed(request) or request.user.has_perm(METRICS_PERMISSION):
        return ExportToDjangoView(request)
    if request.user.is_authenticated:
        return HttpResponse(_REFUSED, status=403, content_type="text/plain; charset=utf-8")
    response = HttpResponse(_REFUSED, status=401, content_type="text/plain; charset=utf-8")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


class SchemaReaders(BasePermission):
    """The OpenAPI schema: any authenticated user (the docs page loads it with the session), or an allowed
    address (a CI job fetching the schema from the host itself)."""

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated) or _allowed(request)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - one line per scrape would flood the worker log
        pass


def worker_metrics_serve(port: int, registry) -> None:
    """Serve `registry` on `port` (all interfaces) in a daemon thread, to the same readers as web's /metrics
    by address or token (a worker has no sessions). The worker's samples are the sensitive ones: results per class
    and urgency are counted where inference runs."""
    from prometheus_client import make_wsgi_app

    exposition = make_wsgi_app(registry)

    def app(environ, start_response):
        if scrape_allowed(remote_addr=environ.get("REMOTE_ADDR"), authorization=environ.get("HTTP_AUTHORIZATION")):
            return exposition(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                            ("WWW-Authenticate", 'Bearer realm="metrics"')])
        return [_REFUSED]

    server = make_server("0.0.0.0", port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
