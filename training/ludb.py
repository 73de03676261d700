"""LUDB records and the annotators' global fiducials, as reference for :mod:`mlcore.measure`.

LUDB (Kalyakulina AI et al., "LUDB: A New Open-Access Validation Tool for Electrocardiogram Delineation
Algorithms", IEEE Access 8:186181-186190, 2020; PhysioNet ludb 1.0.1, ODC-By 1.0) marks the onset, peak and offset
of every P, QRS and T wave in each of the 12 leads separately, at 500 Hz. It has no global (multi-lead) fiducial,
so we derive one per annotated beat the way the measurement programs define theirs: earliest onset and latest
offset across the leads, then the median over the beats of the record.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from mlcore.preprocess import LEADS, reorder_leads

# CI and the worktrees keep the data beside the checkout.
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "ludb"
ANNOTATION_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")  # = LEADS
BEAT_GAP_S = 0.15  # QRS peaks of one beat lie within this of each other across the leads
P_BEFORE_S = 0.5  # a P wave belongs to the next QRS when it ends before it and starts within this of it
T_AFTER_S = 0.8  # a T wave belongs to the previous QRS when it peaks within this after it, before the next


@dataclass(frozen=True)
class LudbRecord:
    record_id: int
    signal: np.ndarray  # (12, 5000) mV in LEADS order
    fs: float
    sex: str  # "M" or "F"
    age: int | None
    rhythm: str
    plain_conduction: bool  # no conduction abnormality and no pacing in ludb.csv
    waves: dict[str, list[tuple[str, int, int, int]]]  # lead -> [(symbol p/N/t, onset, peak, offset)]
    conduction: str = ""  # ludb.csv's "Conduction abnormalities" (newline-separated), "" when none
    paced: bool = False


def record_ids(data_dir: Path = DEFAULT_DIR) -> list[int]:
    return sorted(int(p.stem) for p in (Path(data_dir) / "data").glob("*.hea"))


def _waves(ann: wfdb.Annotation) -> list[tuple[str, int, int, int]]:
    sym, at = ann.symbol, ann.sample
    out = []
    for k, s in enumerate(sym):
        if s in "pNt" and 0 < k < len(sym) - 1 and sym[k - 1] == "(" and sym[k + 1] == ")":
            out.append((s, int(at[k - 1]), int(at[k]), int(at[k + 1])))
    return out


def load_record(record_id: int, data_dir: Path = DEFAULT_DIR) -> LudbRecord:
    base = str(Path(data_dir) / "data" / str(record_id))
    rec = wfdb.rdrecord(base)
    signal = reorder_leads(rec.p_signal.T.astype(np.float64), rec.sig_name)
    waves = {lead: _waves(wfdb.rdann(base, ext)) for lead, ext in zip(LEADS, ANNOTATION_LEADS)}
    sex, age, rhythm, plain, conduction, paced = "", None, "", False, "", False
    with open(Path(data_dir) / "ludb.csv", newline="") as f:
        for row in csv.DictReader(f):
            if int(row["ID"]) == record_id:
                sex = row["Sex"].strip()
                age_text = row["Age"].strip().lstrip(">")
                age = int(age_text) if age_text.isdigit() else None
                rhythm = row["Rhythms"].strip()
                conduction, paced = row["Conduction abnormalities"].strip(), bool(row["Cardiac pacing"].strip())
                plain = not conduction and not paced
    return LudbRecord(record_id, signal, float(rec.fs), sex, age, rhythm, plain, waves, conduction, paced)


def reference_fiducials(rec: LudbRecord) -> list[dict[str, float]]:
    """Per annotated beat: global P on/off, QRS on/off, T off (samples; NaN where a wave is not annotated)."""
    fs = rec.fs
    qrs = sorted((w[2], w[1], w[3]) for lead in LEADS for w in rec.waves[lead] if w[0] == "N")
    clusters: list[list[tuple[int, int, int]]] = []
    for q in qrs:
        if clusters and q[0] - clusters[-1][0][0] <= BEAT_GAP_S * fs:
            clusters[-1].append(q)
        else:
            clusters.append([q])
    clusters = [c for c in clusters if len(c) >= len(LEADS) // 2]  # a beat marked in most leads
    p_waves = [w for lead in LEADS for w in rec.waves[lead] if w[0] == "p"]
    t_waves = [w for lead in LEADS for w in rec.waves[lead] if w[0] == "t"]
    beats = []
    for k, c in enumerate(clusters):
        peak = float(np.median([q[0] for q in c]))
        on, off = min(q[1] for q in c), max(q[2] for q in c)
        next_on = min(q[1] for q in clusters[k + 1]) if k + 1 < len(clusters) else np.inf
        ps = [w for w in p_waves if w[3] <= on + 0.02 * fs and w[1] >= on - P_BEFORE_S * fs]
        ts = [w for w in t_waves if off < w[2] <= min(peak + T_AFTER_S * fs, next_on)]
        beats.append({
            "r": peak, "qrs_on": float(on), "qrs_off": float(off),
            "p_on": float(min(w[1] for w in ps)) if ps else np.nan,
            "p_off": float(max(w[3] for w in ps)) if ps else np.nan,
            "t_off": float(max(w[3] for w in ts)) if ts else np.nan,
        })
    return beats
