from __future__ import annotations


class ClinicalError(Exception):
    """The one domain error: a message for the user and the form field it belongs to."""

    def __init__(self, message: str, field: str = "__all__") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
