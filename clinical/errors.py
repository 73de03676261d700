"""The application's one domain error, plain Python (no Django): the intake readers, the clinical services and the
monitoring services all raise it, the API maps its code to a status once (clinical.api.errors.STATUS_BY_CODE), and
pages show it in one way (clinical.forms.form_error / page_error)."""
from __future__ import annotations


class ApplicationError(Exception):
    """A refusal the user can act on: a message for them, the input field it belongs to, and a code for the API.

    ``field``: the form or API field at fault; "__all__" for the request as a whole; None when no input is at fault
    (the record's state refuses it), which the API answers with no ``fields``. ``code`` names the kind of refusal:
    the API chooses the status from it, never from the message.
    """

    def __init__(self, message: str, field: str | None = "__all__", code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
