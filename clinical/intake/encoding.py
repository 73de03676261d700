"""Telling text from binary and the encodings exports use, before a parser reads them."""
from __future__ import annotations

import codecs
import re

CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")


def looks_binary(content: bytes) -> bool:
    # Control characters other than tab, newlines, vertical tab, form feed and carriage return do not occur in
    # text exports.
    return CONTROL.search(content) is not None


def utf16_or_32(content: bytes) -> str | None:
    """'UTF-16' / 'UTF-32' for text in those encodings (with a byte-order mark, or UTF-16 without one)."""
    if content.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    head = content[:4096]
    if len(head) >= 4 and b"\0" in head:
        # ASCII text in UTF-16 has a NUL in every other byte, all at even or all at odd positions.
        even, odd = head[0::2].count(0) / len(head[0::2]), head[1::2].count(0) / len(head[1::2])
        if max(even, odd) > 0.9 and min(even, odd) < 0.1:
            return "UTF-16"
    return None

