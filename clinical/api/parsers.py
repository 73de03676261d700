"""Request parsers for the API that fail with a message instead of a server error on hostile bodies."""
from __future__ import annotations

import io

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser, except that a deeply nested document ("[[[[..." within the size limit) is a 400.

    The size is bounded before this runs: DRF reads JSON bodies through request.body, which Django refuses above
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE (413 via api_exception_handler). json raises RecursionError on nesting
    deeper than the interpreter's recursion limit; that is not a ValueError, so DRF would let it through as a 500.

    A well-formed body is read by orjson (a 1.3 MB 12-lead body in a quarter of the time). What orjson refuses
    (it also refuses NaN and Infinity, as DRF's strict parser does) is handed to DRF's parser, which decides and
    words the 400 as before.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        try:
            return super().parse(io.BytesIO(data), media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
