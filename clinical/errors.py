from __future__ import annotations


class ClinicalError(Exception):
    """The one domain error: a message for the user, the form field it belongs to, and a code for the API.

    The code names the kind of refusal; the API maps it to a status once (clinical.api.errors), so that no caller
    chooses a status by reading the message.
    """

    def __init__(self, message: str, field: str = "__all__", code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
