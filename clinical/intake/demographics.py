"""The patient an exported file names: its id, age and sex, where the format carries them.

Only a bulk import reads this (clinical.imports): an upload by a person gives the patient in the form, and the
readers keep no patient tags (ParsedEcg has none), so nothing a file says about its patient reaches an ECG's
stored facts unless an import asks. The id is the export system's own (often a hospital number): the import
turns it into a pseudonym before anything stores it.

Formats: WFDB header comments as PhysioNet's challenges write them ("# Age: 63", "# Sex: Female"), GE MUSE
<PatientDemographics> (PatientID, PatientAge in years, Gender) and Philips Sierra <generalpatientdata>
(patientid, age/years, sex). Anything else states nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from clinical.intake.errors import IntakeError, extension
from clinical.intake.xml import child, local, parse

MALE, FEMALE = "M", "F"  # clinical.models.Patient.Sex, without importing Django here
_SEX_WORDS = {"m": MALE, "male": MALE, "f": FEMALE, "female": FEMALE}
_COMMENT = re.compile(r"^\s*#?\s*(age|sex|gender)\s*:\s*(.*?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class StatedPatient:
    patient_id: str | None = None  # as the export system wrote it: never stored as such
    age: int | None = None  # whole years
    sex: str | None = None  # "M" or "F"; None when the file does not say


def _age(text: str | None) -> int | None:
    try:
        years = float((text or "").strip())
    except ValueError:
        return None
    return int(years) if 0 <= years <= 120 else None  # "NaN", a date or an age code is no age


def _sex(text: str | None) -> str | None:
    return _SEX_WORDS.get((text or "").strip().lower())


def _text(element: Element | None) -> str | None:
    return element.text.strip() if element is not None and element.text and element.text.strip() else None


def _wfdb(header: bytes) -> StatedPatient:
    found: dict[str, str] = {}
    for line in header.decode("latin-1").splitlines():
        if line.lstrip().startswith("#") and (m := _COMMENT.match(line)):
            found[m.group(1).lower()] = m.group(2)
    return StatedPatient(age=_age(found.get("age")), sex=_sex(found.get("sex") or found.get("gender")))


def _muse(root: Element) -> StatedPatient:
    demo = child(root, "PatientDemographics")
    units = (_text(child(demo, "PatientAgeUnits")) or "YEARS").upper()
    return StatedPatient(patient_id=_text(child(demo, "PatientID")),
                         age=_age(_text(child(demo, "PatientAge"))) if units == "YEARS" else None,
                         sex=_sex(_text(child(demo, "Gender"))))


def _philips(root: Element) -> StatedPatient:
    general = child(root, "patient", "generalpatientdata")
    return StatedPatient(patient_id=_text(child(general, "patientid")),
                         age=_age(_text(child(general, "age", "years"))), sex=_sex(_text(child(general, "sex"))))


def stated_patient(files: dict[str, tuple[str, bytes]]) -> StatedPatient:
    """What the upload's files say of the patient (nothing for a file this cannot read: the reader that reads
    the waveform says why)."""
    for name, content in files.values():
        ext = extension(name)
        if ext == "hea":
            return _wfdb(content)
        if ext == "xml":
            try:
                root = parse(content)
            except IntakeError:
                return StatedPatient()
            reader = {"RestingECG": _muse, "restingecgdata": _philips}.get(local(root.tag))
            return reader(root) if reader else StatedPatient()
    return StatedPatient()
