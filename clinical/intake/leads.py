"""Lead names: the standard twelve, the non-standard ones named in messages, the checks that map a file's labels to
the canonical names, and the one function every reader uses to complete the 12 leads from those it found."""
from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np

from clinical.intake.errors import IntakeError, join, lead_s, quoted, shown
from mlcore.preprocess import LEADS, canonical_lead

LEAD_LIST = "I, II, III, aVR, aVL, aVF, V1–V6"
LIMB_LEADS = LEADS[:6]  # the frontal plane: I, II, III, aVR, aVL, aVF
CHEST_LEADS = LEADS[6:]  # V1–V6
# Each frontal lead as a·I + b·II: Einthoven's law III = II − I (Einthoven, Fahr, de Waart, Pflügers Arch 1913;
# 150:275–315) and Goldberger's augmented leads aVR = −(I + II)/2, aVL = I − II/2, aVF = II − I/2 (Goldberger, Am
# Heart J 1942;23:483–492). Any two of the six are independent, so any two give all six; the chest leads are
# independent of them and of each other, so none can be derived.
IN_I_AND_II: dict[str, tuple[float, float]] = {
    "I": (1.0, 0.0), "II": (0.0, 1.0), "III": (-1.0, 1.0), "aVR": (-0.5, -0.5), "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0),
}
# What to do when a reader has no advice of its own (which export to choose on the device).
EXPORT_LEADS = "Export the ECG with all 12 leads (I, II and V1–V6 are enough)."
# The bipolar monitoring leads of Holter and bedside monitors (MIT-BIH's MLII and V5, the European ST-T and
# Long-Term ST databases' MLIII and ML2, the CM5/CC5/CS5 Holter leads): a file of these is not a resting ECG.
MONITORING_LEADS = frozenset(["mli", "mlii", "mliii", "ml1", "ml2", "ml3", "cm1", "cm2", "cm3", "cm4", "cm5", "cm6",
                              "cc5", "cs5"])
# At most this many ECG leads is a Holter or monitor strip, whatever they are called.
MAX_MONITOR_LEADS = 3
# Leads some carts record beyond the standard 12 (right-sided, posterior, Frank XYZ) and the monitoring leads; named
# so that the message can say they are not accepted rather than that they are unrecognised.
NON_STANDARD_LEADS = frozenset(["v7", "v8", "v9", "v3r", "v4r", "v5r", "v6r", "v7r", "x", "y", "z"]) | MONITORING_LEADS
# EDF+ labels are "<signal type> <specification>" ("ECG V1"); some exports prefix "Lead".
_LABEL_PREFIXES = ("ecg ", "ekg ", "lead ")
# Holter exports often number their channels instead of naming the lead: "ECG1", "ECG 2", "EKG3".
_NUMBERED_CHANNEL = re.compile(r"^(?:ecg|ekg)\s*\d{1,2}$")


def _key(label: str) -> str:
    key = str(label).strip().lower()
    for prefix in _LABEL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):].strip()
    return key


def recorded_lead(label: str) -> str | None:
    """The standard lead a file's label names ('AVR', 'v1', 'Lead II', EDF+ 'ECG V1'), or None."""
    return canonical_lead(str(label)) or canonical_lead(_key(label))


def is_non_standard_lead(label: str) -> bool:
    """Whether a label names an ECG lead outside the standard 12 (V7, V4R, Frank X, MLII, CM5, ...)."""
    return _key(label) in NON_STANDARD_LEADS or bool(_NUMBERED_CHANNEL.match(str(label).strip().lower()))


def canonical_names(raw_names: Sequence[str], field: str, *, what: str = "the file", remedy: str = "") -> list[str]:
    """Map each raw lead label to its standard spelling, refusing unknown, extra and duplicate leads, a Holter or
    monitor strip, and a set of leads the 12 cannot be completed from (check_leads)."""
    canon = [canonical_lead(str(n)) for n in raw_names]
    strangers = [str(raw) for raw, c in zip(raw_names, canon) if c is None]
    extra = [s for s in strangers if is_non_standard_lead(s)]
    unknown = [s for s in strangers if s not in extra]
    if unknown:
        verb = "is not a recognised lead name" if len(unknown) == 1 else "are not recognised lead names"
        raise IntakeError(
            f"{quoted(unknown)} {verb}; a 12-lead ECG has leads {LEAD_LIST}. Use those names (spellings such as "
            "AVR, v1 or 'Lead II' are fine) and remove any other signals.",
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
    # A Holter's "MLII, V5" is refused as the recording it is before its monitoring leads are called extra.
    _refuse_monitoring(raw_names, field)
    if extra:
        verb, pronoun = ("is", "it") if len(extra) == 1 else ("are", "them")
        raise IntakeError(
            f"{lead_s([shown(e) for e in extra[:5]])} {verb} not part of the standard 12-lead ECG; remove "
            f"{pronoun} and upload only {LEAD_LIST}.",
            field,
        )
    check_leads(raw_names, what=what, remedy=remedy, field=field)
    return [c for c in canon if c is not None]


def check_leads(labels: Sequence[str], *, what: str, remedy: str = "", field: str = "file") -> None:
    """Refuse, from a file's own lead labels (all its signals, in file order), what the 12 leads cannot be made
    from: a Holter or monitor strip, missing chest leads, fewer than two limb leads. ``what`` names where the
    leads were looked for ("the header rec.hea"), ``remedy`` says which export to choose instead."""
    _refuse_monitoring(labels, field)
    _refuse_incomplete({recorded_lead(label) for label in labels}, what=what, remedy=remedy, field=field)


def complete_leads(columns: dict[str, np.ndarray], *, what: str, remedy: str = "",
                   labels: Sequence[str] | None = None, field: str = "file") -> list[str]:
    """Complete ``columns`` (canonical lead name -> samples in mV, as found in the file) to the 12 standard leads,
    in place, and return the notes saying what was derived from what.

    The missing limb leads are derived from two limb leads that are present, I and II where both are (else the
    first two in the standard order), through the Einthoven and Goldberger relations (IN_I_AND_II); the leads
    found are kept as they are. V1–V6 are required. Refuses (check_leads) a Holter or monitor strip, missing chest
    leads and fewer than two limb leads; ``labels`` are the file's labels of all its signals (default: the leads
    found), for recognising and naming a monitoring recording.
    """
    _refuse_monitoring(list(columns) if labels is None else labels, field)
    _refuse_incomplete(set(columns), what=what, remedy=remedy, field=field)
    missing = [lead for lead in LIMB_LEADS if lead not in columns]
    if not missing:
        return []
    first, second = [lead for lead in LIMB_LEADS if lead in columns][:2]
    if len(columns[first]) != len(columns[second]):  # a lead cut short, or one claiming millions of samples
        raise IntakeError(f"Leads {first} and {second} have different lengths ({len(columns[first]):,} and "
                          f"{len(columns[second]):,} samples); all leads must cover the same time span. Export the "
                          "12 leads over the same seconds.", field)
    lead_i, lead_ii = _i_and_ii(columns, first, second)
    for lead in missing:
        a, b = IN_I_AND_II[lead]
        columns[lead] = a * lead_i + b * lead_ii
    return [f"{join(missing)} derived from {first} and {second}"]


def _i_and_ii(columns: dict[str, np.ndarray], p: str, q: str) -> tuple[np.ndarray, np.ndarray]:
    """Leads I and II from the limb leads p and q: the 2×2 system p = a₁·I + b₁·II, q = a₂·I + b₂·II solved by
    Cramer's rule (its determinant is never 0 for two different limb leads). Recorded leads are used as they are."""
    (a1, b1), (a2, b2) = IN_I_AND_II[p], IN_I_AND_II[q]
    det = a1 * b2 - a2 * b1
    x, y = columns[p], columns[q]
    lead_i = columns["I"] if "I" in columns else (b2 * x - b1 * y) / det
    lead_ii = columns["II"] if "II" in columns else (a1 * y - a2 * x) / det
    return lead_i, lead_ii


def _refuse_monitoring(labels: Sequence[str], field: str) -> None:
    """A Holter export or monitor strip: one to three ECG leads, or monitoring leads (MLII, CM5) without the chest
    leads. Said as what it is, since no reader's lead list makes a 12-lead ECG of it."""
    ecg = [str(label) for label in labels if recorded_lead(label) or is_non_standard_lead(label)]
    monitoring = any(_key(label) in MONITORING_LEADS for label in ecg)
    chest = any(recorded_lead(label) in CHEST_LEADS for label in ecg)
    if not ecg or not (len(ecg) <= MAX_MONITOR_LEADS or (monitoring and not chest)):
        return
    names = join([shown(label.strip(), 20) for label in ecg[:6]] + ([f"{len(ecg) - 6} more"] if len(ecg) > 6 else []))
    raise IntakeError(
        f"This is a {len(ecg)}-lead recording ({names}), such as a Holter or monitor strip, not a 12-lead ECG; the "
        f"other leads cannot be derived from {'it' if len(ecg) == 1 else 'them'}. Upload the resting 12-lead ECG "
        "from the cart (all 12 leads, or at least I, II and V1–V6).",
        field,
    )


def _refuse_incomplete(found: Collection[str | None], *, what: str, remedy: str, field: str) -> None:
    remedy = remedy or EXPORT_LEADS
    chest = [lead for lead in CHEST_LEADS if lead not in found]
    if chest:
        verb = "is" if len(chest) == 1 else "are"
        named = "Leads V1–V6 are" if len(chest) == len(CHEST_LEADS) else f"{lead_s(chest)} {verb}"
        raise IntakeError(
            f"{named} missing from {what}; a 12-lead ECG needs all six chest leads (V1–V6), which cannot be derived "
            f"from the other leads. {remedy}",
            field,
        )
    limbs = [lead for lead in LIMB_LEADS if lead in found]
    if len(limbs) < 2:
        has = f"only one limb lead ({limbs[0]})" if limbs else "no limb lead"
        raise IntakeError(
            f"{what[0].upper()}{what[1:]} has {has}; the six limb leads are derived from any two of I, II, III, aVR, "
            f"aVL and aVF, so at least two are needed. {remedy}",
            field,
        )
