"""Statements that follow from the measurements ("by measurement"), each with the cut-off's source beside it.

:func:`criteria_statements` takes the dict from :func:`mlcore.measure.measure`, the patient's age and sex ("M",
"F", anything else is unknown) and returns JSON-ready statements: code, text, the values that triggered it, the
source, severity, and notes (which limit was used, what the measurement cannot tell). Rules whose inputs are missing
are listed under ``not_assessed`` with the reason. Cut-offs are written once, here. No Django import.

The measurements do not classify the rhythm: rate statements say "bradycardia"/"tachycardia" and note that whether
the rhythm is sinus is not decided by measurement; the PR statement assumes 1:1 AV conduction (the PR is that of
the median beat, not checked beat by beat).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Sources, cited once.
AHA_2009_III = ("Surawicz B et al. AHA/ACCF/HRS Recommendations for the Standardization and Interpretation of the "
                "Electrocardiogram, Part III: Intraventricular Conduction Disturbances. J Am Coll Cardiol "
                "2009;53:976-981")
AHA_2009_IV = ("Rautaharju PM et al. AHA/ACCF/HRS Recommendations for the Standardization and Interpretation of the "
               "Electrocardiogram, Part IV: The ST Segment, T and U Waves, and the QT Interval. J Am Coll Cardiol "
               "2009;53:982-991")
BRADY_2018 = ("Kusumoto FM et al. 2018 ACC/AHA/HRS Guideline on the Evaluation and Management of Patients With "
              "Bradycardia and Cardiac Conduction Delay. Circulation 2019;140:e382-e482")
SVT_2015 = ("Page RL et al. 2015 ACC/AHA/HRS Guideline for the Management of Adult Patients With Supraventricular "
            "Tachycardia. Circulation 2016;133:e506-e574")
TDP_2010 = ("Drew BJ et al. Prevention of Torsade de Pointes in Hospital Settings. AHA/ACCF Scientific Statement. "
            "Circulation 2010;121:1047-1060")
UDMI_2018 = ("Thygesen K et al. Fourth Universal Definition of Myocardial Infarction (2018). Circulation "
             "2018;138:e618-e651")

# Rate. The AHA/ACCF/HRS 2007-2009 recommendations list "sinus bradycardia" and "sinus tachycardia" as statements
# (Mason JW et al., Part II, Circulation 2007;115:1325) without re-defining the rate limits; the 2018 bradycardia
# guideline defines sinus bradycardia as a sinus rate < 50/min, and the 2015 SVT guideline sinus tachycardia as
# > 100/min.
BRADY_BPM = 50  # BRADY_2018, Table "Sinus node dysfunction": sinus rates < 50 bpm
TACHY_BPM = 100  # SVT_2015, section 3: sinus rate > 100 bpm
# First-degree AV block: PR > 200 ms with 1:1 AV conduction (BRADY_2018, AV block definitions).
PR_LONG_MS = 200
# Wide QRS: >= 120 ms in adults, the duration of complete bundle branch block and of nonspecific intraventricular
# conduction delay over 110 ms (AHA_2009_III).
QRS_WIDE_MS = 120
# The limit was set on the global QRS that interpretation programs report, which mlcore.measure's default "exact"
# convention agrees with; its "ludb" convention follows LUDB's union of per-lead marks, which runs wider (see
# mlcore.measure.CONVENTIONS), so a wide QRS read in it says so.
LUDB_QRS_NOTE = ("QRS measured in the LUDB annotators' convention, which reads 20-40 ms wider than the global QRS "
                 "the 120 ms limit was set on")
# Long QTc (AHA_2009_IV): >= 450 ms in men, >= 460 ms in women. Part IV recommends a linear rate correction over
# Bazett's, so the Framingham (linear) QTc is used, Bazett's when it is missing.
QTC_LONG_MS = {"M": 450, "F": 460}
QTC_KEYS = ("qtc_framingham_ms", "qtc_bazett_ms")
# QTc of 500 ms or more: high risk of torsade de pointes (TDP_2010: "QTc over 500 ms"); flagged as critical.
QTC_CRITICAL_MS = 500
# Frontal QRS axis in adults: normal -30 to +90 degrees; left axis deviation -30 to -90, right +90 to +180
# (AHA_2009_III); between -90 and -180 the axis is extreme ("northwest").
AXIS_LEFT_DEG = -30
AXIS_RIGHT_DEG = 90
# ST elevation at the J point in two contiguous leads (UDMI_2018): >= 1 mm (100 µV) in all leads other than V2-V3;
# in V2-V3 >= 2 mm in men >= 40 years, >= 2.5 mm in men < 40 years, >= 1.5 mm in women regardless of age.
# "New" needs a prior ECG; these statements say "meets the STEMI criteria" and leave the comparison to the reader.
STE_OTHER_UV = 100
STE_V2V3_UV = {"men_40_or_older": 200, "men_under_40": 250, "women": 150}
STE_AGE_YEARS = 40
# Horizontal or downsloping ST depression >= 0.5 mm (50 µV) in two contiguous leads (UDMI_2018). "Horizontal or
# downsloping" is ours to measure: the ST level at J+60 ms is no more than 25 µV above that at J.
STD_UV = 50
STD_UPSLOPE_UV = 25
# Contiguous leads, named by territory (UDMI_2018: anterior V1-V6, inferior II, III, aVF, lateral/apical I, aVL).
CONTIGUOUS = {
    "septal": (("V1", "V2"),),
    "anterior": (("V2", "V3"), ("V3", "V4")),
    "lateral": (("I", "aVL"), ("V5", "V6")),
    "inferior": (("II", "III"), ("II", "aVF"), ("III", "aVF")),
}

NOT_SINUS = "whether the rhythm is sinus is not decided by measurement"


@dataclass
class Statement:
    code: str
    text: str
    values: dict
    source: str
    severity: str = "abnormal"  # "abnormal" or "critical"
    notes: list[str] = field(default_factory=list)


def _sex(sex: str | None) -> str | None:
    s = (sex or "").strip().upper()[:1]
    return s if s in ("M", "F") else None


def _v2v3_limit(sex: str | None, age: float | None) -> tuple[int, str]:
    """The V2-V3 ST-elevation limit in µV and which one was used."""
    if sex == "F":
        return STE_V2V3_UV["women"], "women's V2-V3 limit (1.5 mm)"
    if sex == "M" and age is not None:
        if age >= STE_AGE_YEARS:
            return STE_V2V3_UV["men_40_or_older"], "men's V2-V3 limit at 40 years or older (2 mm)"
        return STE_V2V3_UV["men_under_40"], "men's V2-V3 limit under 40 years (2.5 mm)"
    if sex == "M":
        return STE_V2V3_UV["men_40_or_older"], "age unknown: the lower men's V2-V3 limit (2 mm) was used"
    return STE_V2V3_UV["women"], "sex unknown: the lowest V2-V3 limit (1.5 mm, women's) was used"


def _contiguous(leads_meeting: set[str]) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for territory, pairs in CONTIGUOUS.items():
        hits = [list(p) for p in pairs if p[0] in leads_meeting and p[1] in leads_meeting]
        if hits:
            found[territory] = hits
    # V2-V3 or V3-V4 make it anterior; V1-V2 alone is septal, and is folded into "anteroseptal" when both meet.
    if "septal" in found and "anterior" in found:
        found["anteroseptal"] = found.pop("septal") + found.pop("anterior")
    return found


def criteria_statements(m: dict, *, age: float | None, sex: str | None) -> dict:
    """Statements from a measurement dict (see module doc); ``sex`` "M"/"F" or unknown, ``age`` in years or None."""
    out: list[Statement] = []
    skipped: list[dict[str, str]] = []
    reasons = m.get("reasons") or {}
    sx = _sex(sex)

    def missing(code: str, key: str) -> bool:
        if m.get(key) is None:
            skipped.append({"code": code, "reason": f"{key} not measured: {reasons.get(key, 'no value')}"})
            return True
        return False

    if not missing("BRADY", "heart_rate_bpm"):
        hr = m["heart_rate_bpm"]
        if hr < BRADY_BPM:
            out.append(Statement("BRADY", f"Bradycardia, {hr}/min (< {BRADY_BPM})", {"heart_rate_bpm": hr},
                                 BRADY_2018, notes=[NOT_SINUS]))
        elif hr > TACHY_BPM:
            out.append(Statement("TACHY", f"Tachycardia, {hr}/min (> {TACHY_BPM})", {"heart_rate_bpm": hr},
                                 SVT_2015, notes=[NOT_SINUS]))
    if not missing("AVB1", "pr_ms") and m["pr_ms"] > PR_LONG_MS:
        out.append(Statement("AVB1", f"First-degree AV block, PR {m['pr_ms']} ms (> {PR_LONG_MS})",
                             {"pr_ms": m["pr_ms"]}, BRADY_2018,
                             notes=["assumes 1:1 AV conduction: the PR is the median beat's, not checked per beat"]))
    if not missing("WIDE_QRS", "qrs_ms") and m["qrs_ms"] >= QRS_WIDE_MS:
        notes = [LUDB_QRS_NOTE] if m.get("convention") == "ludb" else []
        out.append(Statement("WIDE_QRS", f"Wide QRS, {m['qrs_ms']} ms (>= {QRS_WIDE_MS})", {"qrs_ms": m["qrs_ms"]},
                             AHA_2009_III, notes=notes))

    qtc_key = next((k for k in QTC_KEYS if m.get(k) is not None), None)
    if qtc_key is None:
        skipped.append({"code": "LONG_QTC", "reason": f"QTc not measured: {reasons.get('qt_ms', 'no value')}"})
    else:
        qtc = m[qtc_key]
        formula = qtc_key.removeprefix("qtc_").removesuffix("_ms").capitalize()
        if qtc >= QTC_CRITICAL_MS:
            out.append(Statement("LONG_QTC", f"Markedly prolonged QTc, {qtc} ms ({formula}; >= {QTC_CRITICAL_MS})",
                                 {qtc_key: qtc}, TDP_2010, severity="critical"))
        elif sx is None:
            if qtc >= QTC_LONG_MS["M"]:
                # Between the men's and women's limits the statement depends on sex; at or above both it does not.
                if qtc >= QTC_LONG_MS["F"]:
                    out.append(Statement("LONG_QTC", f"Prolonged QTc, {qtc} ms ({formula}; >= {QTC_LONG_MS['F']})",
                                         {qtc_key: qtc}, AHA_2009_IV,
                                         notes=["sex unknown: at or above both the men's and the women's limit"]))
                else:
                    skipped.append({"code": "LONG_QTC", "reason": (
                        f"QTc {qtc} ms lies between the men's ({QTC_LONG_MS['M']}) and women's ({QTC_LONG_MS['F']}) "
                        "limits and the sex is unknown")})
        elif qtc >= QTC_LONG_MS[sx]:
            who = "men" if sx == "M" else "women"
            out.append(Statement("LONG_QTC", f"Prolonged QTc, {qtc} ms ({formula}; >= {QTC_LONG_MS[sx]} in {who})",
                                 {qtc_key: qtc}, AHA_2009_IV, notes=[f"{who}'s limit ({QTC_LONG_MS[sx]} ms) used"]))

    if not missing("AXIS", "qrs_axis_deg"):
        ax = m["qrs_axis_deg"]
        if ax < -90:
            out.append(Statement("EXTREME_AXIS", f"Extreme axis deviation, QRS axis {ax}°", {"qrs_axis_deg": ax},
                                 AHA_2009_III))
        elif ax < AXIS_LEFT_DEG:
            out.append(Statement("LAD", f"Left axis deviation, QRS axis {ax}° (< {AXIS_LEFT_DEG}°)",
                                 {"qrs_axis_deg": ax}, AHA_2009_III))
        elif ax > AXIS_RIGHT_DEG:
            out.append(Statement("RAD", f"Right axis deviation, QRS axis {ax}° (> +{AXIS_RIGHT_DEG}°)",
                                 {"qrs_axis_deg": ax}, AHA_2009_III))

    st_j = m.get("st_j_uv") or {}
    st_j60 = m.get("st_j60_uv") or {}
    if not st_j:
        skipped.append({"code": "STEMI", "reason": f"ST levels not measured: {reasons.get('st_j_uv', 'no value')}"})
    else:
        v23, v23_note = _v2v3_limit(sx, age)
        limits = {lead: (v23 if lead in ("V2", "V3") else STE_OTHER_UV) for lead in st_j}
        elevated = {lead for lead, uv in st_j.items() if uv is not None and uv >= limits[lead]}
        territories = _contiguous(elevated)
        if territories:
            leads = sorted({lead for pairs in territories.values() for p in pairs for lead in p},
                           key=list(st_j).index)
            out.append(Statement(
                "STEMI", f"ST elevation meeting STEMI criteria, {' and '.join(territories)} ({', '.join(leads)})",
                {"st_j_uv": {lead: st_j[lead] for lead in leads}, "territories": territories,
                 "limits_uv": {lead: limits[lead] for lead in leads}},
                UDMI_2018, severity="critical",
                notes=[v23_note, "'new' ST elevation needs a prior ECG to compare with"]))
        depressed = {lead for lead, uv in st_j.items()
                     if uv is not None and uv <= -STD_UV and st_j60.get(lead) is not None
                     and st_j60[lead] - uv <= STD_UPSLOPE_UV}
        territories = _contiguous(depressed)
        if territories:
            leads = sorted({lead for pairs in territories.values() for p in pairs for lead in p},
                           key=list(st_j).index)
            out.append(Statement(
                "ST_DEPRESSION",
                f"Horizontal or downsloping ST depression, {' and '.join(territories)} ({', '.join(leads)})",
                {"st_j_uv": {lead: st_j[lead] for lead in leads}, "st_j60_uv": {lead: st_j60[lead] for lead in leads},
                 "territories": territories}, UDMI_2018))
    return {"statements": [asdict(s) for s in out], "not_assessed": skipped}
