"""The API's one error shape."""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from clinical.errors import ApplicationError
from clinical.intake import ACCEPTED_UPLOADS, MAX_SECONDS, MAX_UPLOAD_BYTES

_CODES = {400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          406: "not_acceptable", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
          422: "unprocessable", 429: "throttled"}
# The status of each ApplicationError code, in this one place; a code not named here is a 400 ("invalid"). A code named
# here is also the body's "code"; the message never decides the status.
STATUS_BY_CODE = {"idempotency_mismatch": status.HTTP_422_UNPROCESSABLE_ENTITY,
                  # The record's state refuses the request (a second acknowledgement, a reading already confirmed).
                  "conflict": status.HTTP_409_CONFLICT,
                  # The reading workflow (clinical.interpretations): the record's state refuses the request, or the
                  # signature (password or token) does not sign for this reviewer.
                  "already_confirmed": status.HTTP_409_CONFLICT, "not_confirmed": status.HTTP_409_CONFLICT,
                  "locked": status.HTTP_409_CONFLICT, "not_ready": status.HTTP_409_CONFLICT,
                  "signature": status.HTTP_403_FORBIDDEN, "forbidden": status.HTTP_403_FORBIDDEN,
                  # A report asked for before the analysis has a result (clinical.reports.selectors.NOT_READY).
                  "result_not_ready": status.HTTP_409_CONFLICT}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this server accepts."


def _too_large(context) -> PayloadTooLarge:
    request = context.get("request")
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
    except ValueError:
        size = 0
    return body_too_large(size)


def body_too_large(size: int) -> PayloadTooLarge:
    """Say how large the request body was and what is accepted (the body, not a file: the client sent no file)."""
    from django.conf import settings

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    said = f"The request body is {size / 2**20:.1f} MB" if size else "The request body is too large"
    return PayloadTooLarge(
        f"{said}; this server accepts at most {limit / 2**20:.0f} MB of JSON or form data. Submit one ECG per "
        f"request: up to {MAX_SECONDS:g} s ({MAX_SECONDS / 60:g} minutes) as JSON, or as files of up to "
        f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB each."
    )


def api_exception_handler(exc, context):
    """Every 4xx/5xx as {"error": {"code", "message", "fields"}}; domain errors carry the form's messages."""
    if isinstance(exc, RequestDataTooBig):
        exc = _too_large(context)
    if isinstance(exc, TooManyFilesSent | TooManyFieldsSent):
        # Django refuses a multipart body with over DATA_UPLOAD_MAX_NUMBER_FILES files (or _FIELDS fields) while
        # DRF parses it; uncaught, that is Django's HTML 400 page.
        exc = exceptions.ValidationError({"files" if isinstance(exc, TooManyFilesSent) else "non_field_errors": [
            f"The request carries too many {'files' if isinstance(exc, TooManyFilesSent) else 'fields'}; "
            f"upload {ACCEPTED_UPLOADS}."]})
    if isinstance(exc, ApplicationError):
        return _application_error(exc, context)
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


def _application_error(exc: ApplicationError, context) -> Response:
    """The domain error in the one error shape: its status and code from STATUS_BY_CODE, its message on its field.

    The field is named as the API names it: a view may declare ``error_fields(request)``, the service's field names
    mapped to its own (EcgSubmitApi: the reader's "json" document is the JSON body's "leads")."""
    status_code = STATUS_BY_CODE.get(exc.code, status.HTTP_400_BAD_REQUEST)
    code = exc.code if exc.code in STATUS_BY_CODE else _CODES[status.HTTP_400_BAD_REQUEST]
    view, request = context.get("view"), context.get("request")
    names = view.error_fields(request) if view is not None and hasattr(view, "error_fields") else {}
    field = names.get(exc.field, exc.field)
    fields = {} if field is None else {"non_field_errors" if field == "__all__" else field: [exc.message]}
    set_rollback()  # as DRF's handler does for the errors it answers
    return Response({"error": {"code": code, "message": exc.message, "fields": fields}}, status=status_code)


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


# Django's own error views, for what fails outside an API view (an unknown address under /api/, a request refused
# by middleware): under /api/ the error shape, elsewhere the app's pages. Wired as handler400/403/404/500 in
# ecgapp.urls.
API_PREFIX = "/api/"
_MESSAGES = {400: "Bad request.", 403: "Forbidden.", 404: "No such API address; see /api/v1/docs/.",
             500: "Server error; the request id in X-Request-ID finds it in the logs."}


def api_error_response(status_code: int, message: str = "", fields: dict | None = None) -> JsonResponse:
    """The error shape for a response made outside DRF."""
    return JsonResponse({"error": {"code": _CODES.get(status_code, "error"),
                                   "message": message or _MESSAGES.get(status_code, "Request failed."),
                                   "fields": fields or {}}}, status=status_code)


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return api_error_response(400) if is_api_request(request) else defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    return api_error_response(500) if is_api_request(request) else defaults.server_error(request)
