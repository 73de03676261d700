"""Lead names: the standard twelve, the non-standard ones named in messages, and the checks that map a
file's labels to the canonical names."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clinical.intake.errors import IntakeError, lead_s, quoted, shown
from mlcore.preprocess import LEADS, canonical_lead

LEAD_LIST = "I, II, III, aVR, aVL, aVF, V1–V6"
# Leads some carts record beyond the standard 12 (right-sided, posterior, Frank XYZ); named so that the message
# can say they are not accepted rather than that they are unrecognised.
NON_STANDARD_LEADS = frozenset(
    ["v7", "v8", "v9", "v3r", "v4r", "v5r", "v6r", "v7r", "x", "y", "z", "cm5", "ml2", "mlii"]
)
# Bytes per sample for the WFDB storage formats we can size-check (https://physionet.org/physiotools/wag/signal-5.htm).


def canonical_names(raw_names: Sequence[str], field: str) -> list[str]:
    """Map each raw lead label to its standard spelling, refusing unknown, extra, duplicate and missing leads."""
    canon = [canonical_lead(str(n)) for n in raw_names]
    strangers = [str(raw) for raw, c in zip(raw_names, canon) if c is None]
    extra = [s for s in strangers if s.strip().lower() in NON_STANDARD_LEADS]
    unknown = [s for s in strangers if s not in extra]
    if unknown:
        verb = "is not a recognised lead name" if len(unknown) == 1 else "are not recognised lead names"
        raise IntakeError(
            f"{quoted(unknown)} {verb}; a 12-lead ECG has leads {LEAD_LIST}. Use those names (spellings such as "
            "AVR, v1 or 'Lead II' are fine) and remove any other signals.",
            field,
        )
    if extra:
        verb, pronoun = ("is", "it") if len(extra) == 1 else ("are", "them")
        raise IntakeError(
            f"{lead_s([shown(e) for e in extra[:5]])} {verb} not part of the standard 12-lead ECG; remove "
            f"{pronoun} and upload only {LEAD_LIST}.",
            field,
        )
    for lead in LEADS:
        spellings = [str(raw) for raw, c in zip(raw_names, canon) if c == lead]
        if len(spellings) > 1:
            raise IntakeError(
                f"Lead {lead} appears {len(spellings)} times (as {quoted(spellings)}); each lead must appear once. "
                "Remove the duplicate.",
                field,
            )
    missing = [lead for lead in LEADS if lead not in canon]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise IntakeError(f"{lead_s(missing)} {verb} missing; a 12-lead ECG needs {LEAD_LIST}.", field)
    return [c for c in canon if c is not None]


def derive_limb_leads(columns: dict[str, np.ndarray]) -> list[str]:
    """III, aVR, aVL, aVF from I and II where missing (Einthoven's and Goldberger's relations); returns the names
    derived. GE MUSE stores only the 8 independent leads."""
    derived = []
    if "I" in columns and "II" in columns:
        i, ii = columns["I"], columns["II"]
        if len(i) != len(ii):  # a lead cut short, or one claiming millions of samples: numpy would not broadcast
            raise IntakeError(f"Leads I and II have different lengths ({len(i):,} and {len(ii):,} samples); all leads "
                              "must cover the same time span. Export the 12 leads over the same seconds.", "file")
        for name, value in (("III", ii - i), ("aVR", -(i + ii) / 2), ("aVL", i - ii / 2), ("aVF", ii - i / 2)):
            if name not in columns:
                columns[name] = value
                derived.append(name)
    return derived
