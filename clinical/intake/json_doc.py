"""The JSON upload: {"fs": 500, "units": "mV" | "uV", "leads": {"I": [...], ...}}."""
from __future__ import annotations

import json

import numpy as np
import orjson

from clinical.intake.errors import IntakeError, json_shown, shown
from clinical.intake.leads import LEAD_LIST, canonical_names, complete_leads
from clinical.intake.limits import MAX_COLUMNS, MAX_SECONDS
from clinical.intake.record import ParsedEcg, assemble, check_content_size, check_duration, check_fs, mv_per_unit

_SAMPLES_IN_MV = "Write every sample as a number in mV, such as 0.125."
_NUMBER_TYPES = frozenset((int, float))


def loads(data: bytes | str) -> object:
    """``json.loads`` with its exact results and errors, at orjson's speed for a well-formed document.

    orjson (about 4x faster on a 1.3 MB 12-lead body) refuses a few documents that the standard library reads
    (NaN and Infinity, integers beyond 64 bits, nesting over 1024 levels) and words its errors differently, so
    any document orjson refuses is read again by ``json``, which decides and explains."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def _json_number_list(lead: str, values: object) -> np.ndarray:
    if not isinstance(values, list):
        raise IntakeError(f"Lead {lead} must be a list of numbers; got {type(values).__name__}. Write each lead as "
                          'a list of samples in mV, like "I": [0.1, 0.12, ...].', "json")
    # bool is an int subclass and would silently become 0/1. The set of the samples' types, taken in C, is the
    # check; the loop that names the first bad sample runs only when there is one (it was 40% of a submit's parse).
    kinds = set(map(type, values))
    for i, v in enumerate(values if not kinds <= _NUMBER_TYPES else ()):
        if type(v) not in _NUMBER_TYPES:
            shown_value = "null" if v is None else json_shown(v)
            raise IntakeError(f"Lead {lead}, sample {i + 1}: {shown_value} is not a number. {_SAMPLES_IN_MV}",
                              "json")
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond the range of a double
        i = next(i for i, v in enumerate(values) if type(v) is int and abs(v) >= 2**1023)
        raise IntakeError(
            f"Lead {lead}, sample {i + 1}: a {len(str(values[i]))}-digit number is far too large to be millivolts. "
            f"{_SAMPLES_IN_MV}",
            "json",
        ) from None


def parse_json(data: bytes, document: object = None) -> ParsedEcg:
    """Read ``{"fs": 500, "units": "mV" | "uV", "leads": {"I": [...], ...}}`` (units default to mV).

    ``document``: ``data`` already parsed (the API's body, which DRF parsed to validate the patient), so that a
    1 MB body is not parsed twice."""
    check_content_size(data, ".json", "json")
    example = '{"fs": 500, "units": "mV", "leads": {"I": [...], "II": [...], ...}}'
    try:
        doc = loads(data) if document is None else document
    except UnicodeDecodeError as exc:
        raise IntakeError(f"The .json file is not UTF-8 text. Save it as UTF-8, a JSON document like {example}.",
                          "json") from exc
    except json.JSONDecodeError as exc:
        raise IntakeError(
            f"The .json file is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). Upload a "
            f"document like {example}.",
            "json",
        ) from exc
    except RecursionError:
        raise IntakeError(
            f"The .json file is nested too deeply to be an ECG. Upload a document like {example}.", "json"
        ) from None
    except ValueError as exc:  # an integer of more than 4300 digits (Python's limit on int parsing)
        problem = "it has a number thousands of digits long" if "digits" in str(exc) else shown(str(exc), 120)
        raise IntakeError(f"The .json file cannot be read: {problem}. Upload a document like {example}, with "
                          "samples in mV such as 0.125.", "json") from exc
    if not isinstance(doc, dict):
        raise IntakeError(f"The JSON document is not an object. Upload an object like {example}.", "json")
    if "fs" not in doc:
        raise IntakeError(f'The JSON document has no "fs" (sampling rate in Hz). Add it, as in {example}.', "json")
    fs = check_fs(doc["fs"], "json", 'The JSON "fs" (sampling rate)')
    units = doc.get("units", "mV")
    if not isinstance(units, str) or units.strip().lower() not in ("mv", "uv", "µv", "μv"):
        raise IntakeError(f'"units" must be "mV" or "uV"; got {json_shown(units)}. Set it to the unit of the '
                          'samples, or leave it out for mV.', "json")
    factor = mv_per_unit(units)
    if "leads" not in doc:
        raise IntakeError(f'The JSON document has no "leads". Add them, as in {example}.', "json")
    leads = doc["leads"]
    if not isinstance(leads, dict):
        raise IntakeError(
            f'"leads" must be an object mapping lead names to lists of numbers. Write it like {example}.', "json"
        )
    if len(leads) > MAX_COLUMNS:
        raise IntakeError(f'"leads" has {len(leads):,} entries; a 12-lead ECG has the leads {LEAD_LIST}. Remove '
                          "the entries that are not one of these.", "json")
    raw_names = list(leads)
    canon = canonical_names(raw_names, "json", what="the .json file")
    for raw in raw_names:  # refuse a far too long lead before checking each of its samples
        if isinstance(leads[raw], list) and len(leads[raw]) / fs > MAX_SECONDS:
            check_duration(len(leads[raw]), fs, "json")
    with np.errstate(all="ignore"):
        columns = {lead: _json_number_list(lead, leads[raw]) * factor for raw, lead in zip(raw_names, canon)}
    notes = complete_leads(columns, what="the .json file", labels=raw_names, field="json")
    return assemble(columns, fs, "json", "json", notes=notes)


# ---------------------------------------------------------------------------------------------------------------
# Dispatch
