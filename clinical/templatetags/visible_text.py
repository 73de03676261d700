"""`{{ text|visible }}`: text that people typed or uploaded, with its invisible characters shown.

A right-to-left override (U+202E) in a note, pseudonym, file name or audit detail would reorder what the reader
sees ("...exe.fdp" shown as "...pdf.exe"); zero-width and other format characters hide text. Shown as \\u202e
markers, the way clinical.intake.shown writes them in upload messages. What is stored is not changed; line breaks
and tabs are kept (a note is several lines).
"""
from __future__ import annotations

import unicodedata

from django import template

from clinical.intake import HIDDEN_CATEGORIES

register = template.Library()
_KEPT = frozenset("\n\t")


@register.filter
def visible(value: object) -> str:
    """The text with each control, format (bidi, zero-width), surrogate, private-use, unassigned and line or
    paragraph separator character written as a \\uXXXX marker. Autoescaping applies after this, as usual."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "".join(f"\\u{ord(ch):04x}" if ch not in _KEPT and unicodedata.category(ch) in HIDDEN_CATEGORIES
                   else ch for ch in text)
