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


def _too_large(context) -> PayloadTooLarge:
    """Say how large the body was and what is accepted."""
    from django.conf import settings

    request = context.get("request")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
    except ValueError:
        size = 0
    said = f"The request body is {size / 2**20:.1f} MB" if size else "The request body is too large"
    return PayloadTooLarge(
        f"{said}; this server accepts at most {limit / 2**20:.0f} MB of JSON or form data. Submit one ECG per "
        "request (up to 5 MB per file)."
    )


def api_exception_handler(exc, context):
    """Every 4xx/5xx as {"error": {"code", "message", "fields"}}; domain errors carry the form's messages."""
    if isinstance(exc, RequestDataTooBig):
        exc = _too_large(context)
    if isinstance(exc, ClinicalError):
        exc = exceptions.ValidationError({exc.field if exc.field != "__all__" else "non_field_errors": [exc.message]})
    response = exception_handler(exc, context)
    if response is None:
        return None
    fields: dict = {}
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        fields = dict(_flatten(response.data))
        key, first = next(iter(fields.items()), ("", ["Invalid request."]))
        message = first[0] if first else "Invalid request."
        if "." in key:  # a nested field ("patient.age"): say which
            message = f"{key}: {message}"
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
        message = str(detail) if detail else "Request failed."
    response.data = {"error": {"code": _CODES.get(response.status_code, "error"), "message": message,
                               "fields": fields}}
    return response


def _flatten(errors, prefix: str = ""):
    """DRF's nested validation errors ({"patient": {"age": [...]}}) as ("patient.age", [messages]) pairs."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list) and any(isinstance(v, dict | list) for v in errors):
        for i, value in enumerate(errors):
            yield from _flatten(value, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix or "non_field_errors", [str(m) for m in (errors if isinstance(errors, list) else [errors])]
