"""The API's one error shape."""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.views import exception_handler

from clinical.errors import ClinicalError

_CODES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          406: "not_acceptable", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
          429: "throttled"}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this server accepts."


def api_exception_handler(exc, context):
    """Every 4xx/5xx as {"error": {"code", "message", "fields"}}; domain errors carry the form's messages."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, ClinicalError):
        exc = exceptions.ValidationError({exc.field if exc.field != "__all__" else "non_field_errors": [exc.message]})
    response = exception_handler(exc, context)
    if response is None:
        return None
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        fields = {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in response.data.items()}
        first = next(iter(fields.values()), ["Invalid request."])
        message = first[0] if first else "Invalid request."
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        message = str(detail) if detail else "Request failed."
    response.data = {"error": {"code": _CODES.get(response.status_code, "error"), "message": message,
                               "fields": fields}}
    return response
