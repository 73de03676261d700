"""``python -m training.bench_measure``: mlcore.measure against the LUDB cardiologists' global fiducials.

Prints, per quantity, n, the median and 75th-percentile absolute error and the bias (ours minus reference), the
records where only one side has a value, and the time per ECG. The reference is derived per annotated beat (earliest
onset, latest offset across the 12 leads; training.ludb), then the median over the record's beats; the QRS axis
reference uses the same net-area method on the annotated QRS in I and aVF. Then each global fiducial's error (P onset,
QRS onset and offset, T offset: which end of an interval its error comes from) and PR, QRS, QT and the false wide
QRS per half of the records (1-50, 51-100), for cross-checks.

A second table compares ours with the devices' own measurements (heart rate, PR, QRS, QT, QRS axis) on every real
export in ../shared/ecg_samples that states them, read through clinical.intake.parse_upload (no Django) and measured
on the analysed window (mlcore.window.choose_window), as the product does; skipped when the folder is absent.

Goal (Kligfield P et al., Am Heart J 2018;200:1-10 and J Electrocardiol 2020 for the spread between 7 programs):
median absolute error <= 8 ms for PR and QRS, <= 12 ms for QT, <= 2 bpm for the heart rate.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from mlcore.criteria import PR_LONG_MS, QRS_WIDE_MS
from mlcore.measure import (
    AMPLITUDE_LOWPASS_HZ,
    BASELINE_S,
    CONVENTIONS,
    DEFAULT_CONVENTION,
    filtered,
    frontal_axis,
    measure,
)
from mlcore.preprocess import LEADS
from mlcore.window import choose_window, crop
from training.ludb import DEFAULT_DIR, LudbRecord, load_record, record_ids, reference_fiducials

QUANTITIES = ("pr_ms", "qrs_ms", "qt_ms", "heart_rate_bpm", "qrs_axis_deg")
# The global fiducials behind PR, QRS and QT, compared one by one: whether an interval's error comes from its onset,
# its offset or both.
FIDUCIALS = ("p_on", "qrs_on", "qrs_off", "t_off")
# Records 1-100 split in two for cross-checks: a constant chosen on one half is reported on the other (the held-back
# records 101-200 judge the result).
HALVES = (("records 1-50", lambda rid: rid <= 50), ("records 51-100", lambda rid: rid > 50))
WIDE_QRS_MS = QRS_WIDE_MS
# The criteria against LUDB's own diagnoses (ludb.csv, the cardiologists' reading of each ECG): a QRS >= 120 ms
# against a complete bundle-branch block, a non-specific intraventricular conduction delay or pacing; a PR > 200 ms
# against "I degree av block". What the QRS convention means for a patient, beside its error in ms.
WIDE_DIAGNOSES = ("Complete left bundle branch block", "Complete right bundle branch block",
                  "Non-specific intravintricular conduction delay")  # ludb.csv's spelling
AVB1_DIAGNOSIS = "I degree av block"
GOALS = {"pr_ms": 8, "qrs_ms": 8, "qt_ms": 12, "heart_rate_bpm": 2}
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "shared" / "ecg_samples"
# Ours -> the device's measurement (clinical.intake.device names them as GE MUSE does).
DEVICE_KEYS = {"heart_rate_bpm": "VentricularRate", "pr_ms": "PRInterval", "qrs_ms": "QRSDuration",
               "qt_ms": "QTInterval", "qrs_axis_deg": "RAxis"}
WFDB_PARTS = (".dat", ".mat", ".xyz")
ALIGN_MATCH_S = 0.1  # an annotated beat and one of ours are the same beat when their QRS lie this close


def reference(rec: LudbRecord) -> dict[str, float | None]:
    """The annotators' PR, QRS, QT (ms), heart rate and QRS axis for one record."""
    fs = rec.fs
    beats = reference_fiducials(rec)
    ms = 1000 / fs

    def med(values: list[float]) -> float | None:
        v = [x for x in values if not math.isnan(x)]
        return float(np.median(v)) if v else None

    out: dict[str, float | None] = {
        "pr_ms": med([(b["qrs_on"] - b["p_on"]) * ms for b in beats]),
        "qrs_ms": med([(b["qrs_off"] - b["qrs_on"]) * ms for b in beats]),
        "qt_ms": med([(b["t_off"] - b["qrs_on"]) * ms for b in beats]),
    }
    rr = np.diff([b["r"] for b in beats])
    out["heart_rate_bpm"] = 60 * fs / float(np.median(rr)) if len(rr) else None
    amp = filtered(rec.signal, fs, AMPLITUDE_LOWPASS_HZ)
    i_i, i_f = LEADS.index("I"), LEADS.index("aVF")
    areas = []
    for b in beats:
        on, off = int(b["qrs_on"]), int(b["qrs_off"])
        base = amp[[i_i, i_f], on - int(BASELINE_S[0] * fs):on - int(BASELINE_S[1] * fs) + 1].mean(axis=1)
        areas.append((amp[[i_i, i_f], on:off] - base[:, None]).sum(axis=1) / fs)
    a = np.median(np.array(areas), axis=0) if areas else None
    out["qrs_axis_deg"] = None if a is None else frontal_axis(float(a[0]), float(a[1]))
    return out


def fiducial_errors(rec: LudbRecord, m: dict) -> dict[str, float | None]:
    """Ours minus the annotators' global fiducial (ms), per fiducial: the median over the annotated beats.

    Our fiducials are indices into the median beats; each is placed on every dominant beat (the median beat's
    alignment point on the beat's aligned position) and compared with the annotated beat whose QRS peak lies
    within ALIGN_MATCH_S of it.
    """
    out: dict[str, float | None] = {k: None for k in FIDUCIALS}
    if m["fiducials"] is None:
        return out
    ms, r = 1000 / rec.fs, m["median_beats"]["r"]
    dominant = np.array(m["beats"]["dominant"])
    diffs: dict[str, list[float]] = {k: [] for k in FIDUCIALS}
    for b in reference_fiducials(rec):
        j = int(np.argmin(np.abs(dominant - b["r"])))
        if abs(dominant[j] - b["r"]) > ALIGN_MATCH_S * rec.fs:
            continue
        for k in FIDUCIALS:
            if m["fiducials"][k] is not None and not math.isnan(b[k]):
                diffs[k].append((dominant[j] - r + m["fiducials"][k] - b[k]) * ms)
    return {k: float(np.median(v)) if v else None for k, v in diffs.items()}


def _error(key: str, ours: float, ref: float) -> float:
    if key.endswith("axis_deg"):
        return (ours - ref + 180) % 360 - 180  # the short way round the circle
    return ours - ref


def bench(data_dir: Path = DEFAULT_DIR, out: str | None = None, verbose: bool = False,
          convention: str = DEFAULT_CONVENTION) -> dict:
    ids = record_ids(data_dir)
    rows, elapsed = [], []
    for rid in ids:
        rec = load_record(rid, data_dir)
        t = time.perf_counter()
        m = measure(rec.signal, rec.fs, convention)
        elapsed.append(time.perf_counter() - t)
        ref = reference(rec)
        rows.append({"id": rid, "rhythm": rec.rhythm, "plain_conduction": rec.plain_conduction,
                     "wide_dx": rec.paced or any(d in rec.conduction for d in WIDE_DIAGNOSES),
                     "avb1_dx": AVB1_DIAGNOSIS in rec.conduction,
                     "ours": {k: m[k] for k in QUANTITIES}, "ref": ref, "reasons": m["reasons"],
                     "fiducial_error_ms": fiducial_errors(rec, m)})
    summary: dict = {"records": len(ids), "convention": convention,
                     "ms_per_ecg_median": round(1000 * float(np.median(elapsed)), 1),
                     "ms_per_ecg_max": round(1000 * max(elapsed), 1), "quantities": {}}
    print(f"mlcore.measure (QRS convention {convention!r}) on LUDB ({data_dir}): {len(ids)} records, "
          f"{summary['ms_per_ecg_median']:.0f} ms per ECG (median; max {summary['ms_per_ecg_max']:.0f} ms)")
    print(f"  {'quantity':<15}{'n':>4}{'median |err|':>14}{'p75 |err|':>11}{'bias':>8}{'goal':>7}"
          f"{'only ours':>11}{'only ref':>10}")
    for k in QUANTITIES:
        errs = [_error(k, r["ours"][k], r["ref"][k]) for r in rows
                if r["ours"][k] is not None and r["ref"][k] is not None]
        only_ours = [r["id"] for r in rows if r["ours"][k] is not None and r["ref"][k] is None]
        only_ref = [r["id"] for r in rows if r["ours"][k] is None and r["ref"][k] is not None]
        a = np.abs(errs)
        q = {"n": len(errs), "median_abs": round(float(np.median(a)), 1),
             "p75_abs": round(float(np.percentile(a, 75)), 1), "bias": round(float(np.mean(errs)), 1),
             "goal": GOALS.get(k), "only_ours": only_ours, "only_ref": only_ref}
        summary["quantities"][k] = q
        goal = "" if q["goal"] is None else f"<={q['goal']}"
        print(f"  {k:<15}{q['n']:>4}{q['median_abs']:>14.1f}{q['p75_abs']:>11.1f}{q['bias']:>8.1f}{goal:>7}"
              f"{len(only_ours):>11}{len(only_ref):>10}")
    print(f"  {'fiducial':<15}{'n':>4}{'median |err|':>14}{'median':>8}{'bias':>8}   (ours - annotators' global, ms)")
    summary["fiducials"] = {}
    for k in FIDUCIALS:
        errs = [r["fiducial_error_ms"][k] for r in rows if r["fiducial_error_ms"][k] is not None]
        f = {"n": len(errs), "median_abs": round(float(np.median(np.abs(errs))), 1) if errs else None,
             "median": round(float(np.median(errs)), 1) if errs else None,
             "bias": round(float(np.mean(errs)), 1) if errs else None}
        summary["fiducials"][k] = f
        if errs:
            print(f"  {k:<15}{f['n']:>4}{f['median_abs']:>14.1f}{f['median']:>8.1f}{f['bias']:>8.1f}")
    summary["halves"] = {}
    for name, part in HALVES:
        sel = [r for r in rows if part(r["id"])]
        h: dict = {}
        for k in ("pr_ms", "qrs_ms", "qt_ms"):
            errs = [r["ours"][k] - r["ref"][k] for r in sel if r["ours"][k] is not None and r["ref"][k] is not None]
            h[k] = round(float(np.median(np.abs(errs))), 1) if errs else None
        h["false_wide_qrs"] = sum(not r["wide_dx"] and r["ours"]["qrs_ms"] is not None
                                  and r["ours"]["qrs_ms"] >= WIDE_QRS_MS for r in sel)
        h["without_wide_dx"] = sum(not r["wide_dx"] and r["ours"]["qrs_ms"] is not None for r in sel)
        h["false_wide_qrs_annotators"] = sum(not r["wide_dx"] and (r["ref"]["qrs_ms"] or 0) >= WIDE_QRS_MS
                                             for r in sel)
        summary["halves"][name] = h
        print(f"  {name}: median |err| PR {h['pr_ms']}, QRS {h['qrs_ms']}, QT {h['qt_ms']} ms; QRS >= {WIDE_QRS_MS} ms "
              f"in {h['false_wide_qrs']} of {h['without_wide_dx']} without a complete BBB, IVCD or pacing "
              f"(annotators' union: {h['false_wide_qrs_annotators']})")
    # QRS-duration criteria were set on the global QRS of interpretation programs: how many records without any
    # conduction abnormality or pacing would read as wide.
    plain = [r for r in rows if r["plain_conduction"] and r["ours"]["qrs_ms"] is not None]
    wide_ours = sum(r["ours"]["qrs_ms"] >= WIDE_QRS_MS for r in plain)
    wide_ref = sum((r["ref"]["qrs_ms"] or 0) >= WIDE_QRS_MS for r in plain)
    summary["plain_conduction_wide_qrs"] = {"records": len(plain), "ours": wide_ours, "annotators": wide_ref}
    print(f"  records without conduction abnormality or pacing read as QRS >= {WIDE_QRS_MS} ms: "
          f"{wide_ours} of {len(plain)} (annotators' union: {wide_ref})")
    summary["criteria_vs_diagnoses"] = {}
    for name, key, dx, flagged in (
            (f"QRS >= {QRS_WIDE_MS} ms vs complete BBB / IVCD / paced", "qrs_ms", "wide_dx",
             lambda v: v >= QRS_WIDE_MS),
            (f"PR > {PR_LONG_MS} ms vs 1st-degree AV block", "pr_ms", "avb1_dx", lambda v: v > PR_LONG_MS)):
        c = {"tp": 0, "fn": 0, "fp": 0, "tn": 0, "fp_ref_agrees": 0}
        for r in rows:
            if r["ours"][key] is None:
                continue
            c[("t" if flagged(r["ours"][key]) == r[dx] else "f") + ("p" if flagged(r["ours"][key]) else "n")] += 1
            # A "false positive" the annotators' own interval (their union of per-lead marks) flags as well.
            c["fp_ref_agrees"] += (flagged(r["ours"][key]) and not r[dx] and r["ref"][key] is not None
                                   and flagged(r["ref"][key]))
        summary["criteria_vs_diagnoses"][key] = c
        print(f"  {name}: sensitivity {c['tp']}/{c['tp'] + c['fn']}, false positives {c['fp']} of "
              f"{c['fp'] + c['tn']} without the diagnosis ({c['fp_ref_agrees']} of them flagged by the annotators' "
              f"own interval too)")
    if verbose:
        for r in rows:
            cells = " ".join(f"{k[:3]} {r['ours'][k]!s:>5}/{'-' if r['ref'][k] is None else round(r['ref'][k])!s:>4}"
                             for k in QUANTITIES)
            print(f"  {r['id']:>3} {cells}  {r['rhythm'][:20]}")
    if out:
        Path(out).write_text(json.dumps({"summary": summary, "records": rows}, indent=2, default=str))
    return summary


def _sample_uploads(samples_dir: Path):
    """(name, files) for each upload in the samples folder, as a person would send it (a .hea with its data)."""
    for f in sorted(samples_dir.rglob("*")):
        if not f.is_file() or f.suffix.lower() in (".md", *WFDB_PARTS):
            continue
        files = {"file": (f.name, f.read_bytes())}
        if f.suffix.lower() == ".hea":
            files.update({s: (f.with_suffix(s).name, f.with_suffix(s).read_bytes()) for s in WFDB_PARTS
                          if f.with_suffix(s).is_file()})
        yield str(f.relative_to(samples_dir)), files


def device_stated(device: dict) -> dict[str, float]:
    """The device's own heart rate, PR, QRS, QT and QRS axis, under our names (rate from the RR when not stated)."""
    stated = (device or {}).get("measurements") or {}
    out = {ours: float(stated[theirs]) for ours, theirs in DEVICE_KEYS.items() if stated.get(theirs) is not None}
    if "heart_rate_bpm" not in out and stated.get("RRInterval"):
        out["heart_rate_bpm"] = 60000 / float(stated["RRInterval"])
    return out


def bench_devices(samples_dir: Path = SAMPLES_DIR, convention: str = DEFAULT_CONVENTION) -> dict | None:
    """Ours against the devices' own measurements on the real exports; None when the folder is absent."""
    if not samples_dir.is_dir():
        print(f"device comparison skipped: {samples_dir} is absent")
        return None
    from clinical.intake import IntakeError, parse_upload  # plain Python: no Django in the readers

    rows = []
    for name, files in _sample_uploads(samples_dir):
        try:
            parsed = parse_upload(files=files, fs=None)
        except IntakeError:
            continue  # a file the product would refuse (or that needs a rate typed in) has nothing to compare
        stated = device_stated(parsed.device)
        if not stated:
            continue
        window = choose_window(parsed.signal, parsed.fs)
        m = measure(crop(parsed.signal, parsed.fs, window.start_s), parsed.fs, convention)
        rows.append({"file": name, "device": stated, "ours": {k: m[k] for k in DEVICE_KEYS}})
    print(f"mlcore.measure (QRS convention {convention!r}) against the devices' own measurements "
          f"({samples_dir}): {len(rows)} files that state them; ours/device")
    print(f"  {'file':<50}" + "".join(f"{k:>16}" for k in DEVICE_KEYS))

    def cell(r: dict, k: str) -> str:
        ours, dev = r["ours"][k], r["device"].get(k)
        return f"{'—' if ours is None else ours!s}/{'—' if dev is None else round(dev)!s}"

    for r in rows:
        print(f"  {r['file'][:49]:<50}" + "".join(f"{cell(r, k):>16}" for k in DEVICE_KEYS))
    summary = {}
    for k in DEVICE_KEYS:
        errs = [abs(_error(k, r["ours"][k], r["device"][k])) for r in rows
                if r["ours"][k] is not None and r["device"].get(k) is not None]
        summary[k] = {"n": len(errs), "median_abs": round(float(np.median(errs)), 1) if errs else None}
    print(f"  {'median |ours - device| (n)':<50}" + "".join(
        f"{'—' if q['median_abs'] is None else q['median_abs']!s:>11} ({q['n']})" for q in summary.values()))
    return {"convention": convention, "files": rows, "median_abs": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.bench_measure", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="LUDB folder (with data/ and ludb.csv)")
    ap.add_argument("--out", default=None, help="write per-record values and the summary as JSON here")
    ap.add_argument("--verbose", action="store_true", help="one line per record: ours/reference")
    ap.add_argument("--samples-dir", type=Path, default=SAMPLES_DIR,
                    help="real exports carrying the device's own measurements (skipped when absent)")
    ap.add_argument("--convention", choices=(*CONVENTIONS, "both"), default="both",
                    help="QRS boundary convention (mlcore.measure.CONVENTIONS); default: both, one after the other")
    args = ap.parse_args(argv)
    for conv in (CONVENTIONS if args.convention == "both" else (args.convention,)):
        out = args.out and (args.out if args.convention != "both" else args.out.replace(".json", f"-{conv}.json"))
        bench(args.data_dir, out, args.verbose, conv)
    for conv in (CONVENTIONS if args.convention == "both" else (args.convention,)):
        bench_devices(args.samples_dir, conv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
