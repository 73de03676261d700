"""Request parsers for the API that fail with a message instead of a server error on hostile bodies."""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser, except that a deeply nested document ("[[[[..." within the size limit) is a 400.

    The size is bounded before this runs: DRF reads JSON bodies through request.body, which Django refuses above
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE (413 via api_exception_handler). json raises RecursionError on nesting
    deeper than the interpreter's recursion limit; that is not a ValueError, so DRF would let it through as a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
