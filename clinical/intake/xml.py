"""The .xml upload: sniff the root element and hand the document to the reader of its format (issue 13).

Every XML export is parsed here, once, with defusedxml: a document that declares entities (the "billion laughs"
bomb) or refers to external ones is refused before anything is expanded or fetched. The format readers
(ge_muse, hl7_aecg, philips) receive the parsed root and use the namespace-blind helpers below, because the
formats differ in whether and how they use XML namespaces.
"""
from __future__ import annotations

import codecs
import importlib
import math
from collections.abc import Iterator
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from clinical.intake.errors import IntakeError, shown
from clinical.intake.record import Reading
from clinical.intake.registry import register

# Root element (local name) -> the module that reads that format.
FORMATS = {
    "RestingECG": "clinical.intake.ge_muse",
    "AnnotatedECG": "clinical.intake.hl7_aecg",
    "restingecgdata": "clinical.intake.philips",
}
FORMAT_NAMES = "a GE MUSE (<RestingECG>), Philips Sierra ECG (<restingecgdata>) or HL7 aECG (<AnnotatedECG>)"


@register("xml", "a GE MUSE, Philips Sierra ECG or HL7 aECG XML export")
def read(content: bytes, name: str) -> Reading:
    root = parse(content)
    module = FORMATS.get(local(root.tag))
    if module is None:
        raise IntakeError(
            f"This XML file is not a GE MUSE, Philips or HL7 aECG ECG export (its root element is "
            f"<{shown(local(root.tag))}>). Upload {FORMAT_NAMES} XML file as the ECG system exported it, or the "
            "ECG as WFDB, CSV or JSON.",
            "file",
        )
    return importlib.import_module(module).read_root(root)


def parse(content: bytes) -> Element:
    """The document's root element, parsed without expanding entities; IntakeError for anything else."""
    try:
        return fromstring(_with_bom(content))
    except (EntitiesForbidden, DTDForbidden):
        raise IntakeError(
            "The XML file declares entities (<!ENTITY …>), which ECG exports do not use and which can make a small "
            "file expand to gigabytes; it was refused unread. Upload the file exactly as the ECG system exported it.",
            "file",
        ) from None
    except (ExternalReferenceForbidden, DefusedXmlException):
        raise IntakeError(
            "The XML file refers to external entities or resources, which ECG exports do not use; it was refused "
            "unread. Upload the file exactly as the ECG system exported it.",
            "file",
        ) from None
    except LookupError as exc:  # the XML declaration names an encoding Python does not know
        raise IntakeError(
            f"The XML file declares an encoding that is not known ({shown(str(exc).rsplit(':', 1)[-1].strip(), 40)}); "
            "ECG exports are UTF-8, UTF-16 or ISO-8859-1. Upload the file exactly as the ECG system exported it.",
            "file",
        ) from None
    except ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        if reason in ("no element found", "unclosed token") or "unclosed" in reason:
            raise IntakeError(
                f"The XML file ends before its document does ({reason} at line {line}); it looks cut short. "
                "Upload the complete file as the ECG system exported it.",
                "file",
            ) from None
        raise IntakeError(
            f"The file is not well-formed XML ({shown(reason, 60)} at line {line}, column {column}). If it was "
            "converted or edited, its bytes may not match the encoding its first line declares; upload the file "
            "as the ECG system exported it.",
            "file",
        ) from None


def _with_bom(content: bytes) -> bytes:
    # Expat detects UTF-16 from a byte-order mark; some systems write UTF-16 without one.
    if content.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise IntakeError("The XML file is UTF-32 text, which XML readers do not support; export it as UTF-8 or "
                          "UTF-16.", "file")
    if content.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return content
    if content[:2] == b"<\0":
        return codecs.BOM_UTF16_LE + content
    if content[:2] == b"\0<":
        return codecs.BOM_UTF16_BE + content
    return content


# ---------------------------------------------------------------------------------------------------------------
# Namespace-blind navigation, shared by the format readers.


def local(tag: object) -> str:
    """'{urn:hl7-org:v3}sequence' -> 'sequence' (comments and processing instructions have no str tag)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def children(element: Element | None, name: str) -> list[Element]:
    return [] if element is None else [c for c in element if local(c.tag) == name]


def child(element: Element | None, *path: str) -> Element | None:
    """The first element along ``path`` of child names, or None."""
    for name in path:
        found = children(element, name)
        if not found:
            return None
        element = found[0]
    return element


def descendants(element: Element | None, name: str) -> Iterator[Element]:
    if element is not None:
        yield from (e for e in element.iter() if local(e.tag) == name)


def text(element: Element | None, *path: str) -> str:
    """The stripped text of the element along ``path``, '' where absent."""
    found = child(element, *path) if path else element
    return (found.text or "").strip() if found is not None else ""


def attr(element: Element | None, name: str) -> str:
    """An attribute by local name (xsi:type is '{http://www.w3.org/2001/XMLSchema-instance}type')."""
    if element is None:
        return ""
    for key, value in element.attrib.items():
        if local(key) == name:
            return value.strip()
    return ""


def number(value: str) -> int | float | None:
    """A measurement as the file states it: an int where integral, None where not a finite number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x):
        return None
    return int(x) if x.is_integer() else x
