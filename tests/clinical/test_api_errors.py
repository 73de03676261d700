"""The API's one error shape for the one domain error: the code decides the status, never the message."""
from __future__ import annotations

import pytest
from rest_framework.test import APIRequestFactory

from clinical.api.errors import STATUS_BY_CODE, api_exception_handler
from clinical.errors import ApplicationError
from clinical.intake import IntakeError


def answer(exc: Exception, view=None):
    request = APIRequestFactory().post("/api/v1/ecgs/", {}, format="json")
    response = api_exception_handler(exc, {"view": view, "request": request})
    return response.status_code, response.data["error"]


@pytest.mark.parametrize("code, status", sorted(STATUS_BY_CODE.items()))
def test_each_code_has_its_status_whatever_the_message(code, status):
    for message in ("Already acknowledged by rev-1 at 2026-12-01 10:00.", "Any other words."):
        got, body = answer(ApplicationError(message, "note", code=code))
        assert (got, body["code"], body["message"]) == (status, code, message)
        assert body["fields"] == {"note": [message]}


def test_a_second_acknowledgement_is_a_conflict_by_its_code_not_its_words():
    assert answer(ApplicationError("Already acknowledged.", None, code="conflict")) == (
        409, {"code": "conflict", "message": "Already acknowledged.", "fields": {}})
    # The same words with another code are not a conflict.
    assert answer(ApplicationError("Already acknowledged.", "note"))[0] == 400


def test_an_unmapped_code_is_a_400_invalid_on_its_field():
    assert answer(ApplicationError("No.", code="no_outcomes")) == (
        400, {"code": "invalid", "message": "No.", "fields": {"non_field_errors": ["No."]}})


def test_an_intake_error_is_the_application_error_and_a_view_names_its_fields():
    exc = IntakeError("The JSON document has no leads.", "json")
    assert isinstance(exc, ApplicationError) and isinstance(exc, ValueError)

    class View:
        def error_fields(self, request):
            return {"json": "leads"}

    assert answer(exc)[1]["fields"] == {"json": ["The JSON document has no leads."]}
    assert answer(exc, View())[1]["fields"] == {"leads": ["The JSON document has no leads."]}
