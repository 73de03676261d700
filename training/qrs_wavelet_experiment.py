"""``python -m training.qrs_wavelet_experiment``: wavelet QRS boundaries on LUDB, measured, not shipped (issue 14).

An experiment kept so that its figures can be rerun; nothing in the product imports it. It puts a QRS delineator
in place of mlcore.measure's global QRS boundaries for the length of one training.bench_measure run (P and T are
delineated as shipped, from these QRS boundaries) and prints the benchmark, halves included, per variant:

- ``lead-*``: the wavelet delineator of Martínez JP et al., IEEE Trans Biomed Eng 2004;51:570-581, on each lead's
  median beat: the quadratic-spline wavelet at scale 2^2 (as defined at 250 Hz), the first and last significant
  modulus maxima of the QRS (6% and 9% of the largest modulus within 65 ms of the QRS), the onset where the modulus
  falls under 5% (7% when that maximum is negative) of the first maximum's, the offset under 12.5% (71%) of the
  last's, or at a local minimum of the modulus, whichever comes first. Combined across the 12 leads as the issue
  defines the global QRS (earliest onset, latest offset: ``lead-min``), or against single-lead outliers: the k-th
  earliest / latest (``lead-2nd``, ``lead-3rd``), the earliest / latest within 20 ms of the leads' median (as
  mlcore.measure does for P and T: ``lead-robust``), the median (``lead-median``).
- ``spatial``: the same wavelet and thresholds (5% / 12.5%) on the largest modulus over the 12 leads at each
  sample: the QRS starts where the first lead's modulus rises above the threshold.

Figures (records 1-50 | 51-100: median |error| in ms of PR, QRS, QT, then how many records without a complete
bundle-branch block, conduction delay or pacing read QRS >= 120 ms; "exact" as shipped: 14, 32, 19, 2 | 14, 27.5,
12, 1):

    lead-min     15, 26, 24, 26 | 10.5, 24,   18,   18
    lead-2nd     14, 26, 23, 17 | 11.5, 18.5, 16,   16
    lead-3rd     10, 27, 18, 10 |  9.5, 19.5, 11.5,  5
    lead-robust   7, 16, 16, 10 |  6,   13,   10,    8
    lead-median  12, 30, 18,  3 | 11,   28.5, 13,    0
    spatial      14, 34, 18,  2 | 12,   28.5, 10,    0

Of the 15 complete bundle-branch blocks, conduction delays and paced rhythms, QRS >= 120 ms finds 14 (lead-min), 13
(lead-2nd, -3rd, -robust) or 10 (lead-median, spatial); "exact" finds 12. A clean synthetic 90 ms QRS (tests/mlcore/
synthetic_beats.py) reads 104 ms in every lead-* variant and 84 ms (500 Hz) or 60 ms (250 Hz) in spatial, where
"exact" is within a sample. Every variant that brings the QRS nearer LUDB's reads more records without a wide-QRS
diagnosis as wide, on the same trade-off as moving the shipped boundaries out by a constant: 48 of those 80 records
have an annotators' union (earliest onset to latest offset of their per-lead marks) of 120 ms or more, while their
per-lead QRS has a median of 94 ms. ``bounds`` shows that no QRS onset can do better: with the shipped offset and
an onset exactly at the annotators' on every record, 16 of the 80 read wide (11 | 5), where PR and QT (which start
there too) would meet their goals (PR 7 | 6, QT 7.5 | 8.5 ms); with the shipped onset and an exact offset, 12 of the
80 read wide (8 | 4). The QRS onset alone is 16 ms late (median; offset 12 ms early, P onset 4 ms late, T offset
3 ms late), so neither P nor T delineation can bring PR or QT nearer LUDB's while the QRS keeps its width.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

import mlcore.measure as measure_module
from training.bench_measure import HALVES, WIDE_QRS_MS, bench
from training.ludb import DEFAULT_DIR

WT_SCALE = 2  # Martínez 2004: the QRS is delineated at scale 2^2 (250 Hz)
QRS_HALF_S = 0.065  # the QRS's own modulus maxima lie within this of the alignment point
SEARCH_S = 0.12  # and its first / last significant maximum within this
MAIN_OF_PEAK = 0.3  # a maximum this large is one of the QRS's main waves (our rule: the median beat has no R mark)
GAMMA_PRE, GAMMA_POST = 0.06, 0.09  # Martínez 2004: significant maxima before / after the main waves
CHAIN_S = 0.065  # a further maximum belongs to the QRS when it lies this close to the previous one
XI_ON, XI_ON_NEG = 0.05, 0.07  # Martínez 2004: onset threshold, first maximum positive / negative
XI_OFF, XI_OFF_NEG = 0.125, 0.71  # and the offset's, from the last maximum
LIMIT_S = 0.05  # the boundary lies within this of the first / last maximum
OUTLIER_S = 0.02


def quadratic_spline_wt(y: np.ndarray, fs: float, scale: int = WT_SCALE) -> np.ndarray:
    """The quadratic-spline wavelet transform (à trous) at scale 2^scale as defined at 250 Hz, at rate ``fs``.

    Low-pass [1, 3, 3, 1]/8 and high-pass [2, -2], each upsampled by 2^(j-1) at level j (Martínez 2004); at 500 Hz
    one level more covers the same time scale. Centred (to half a sample: the filter has an even length), so a
    wave's peak lies at a zero crossing.
    """
    level = scale + int(round(math.log2(fs / 250)))
    f = np.array([1.0])
    for j in range(1, level):
        h = np.zeros(3 * 2 ** (j - 1) + 1)
        h[:: 2 ** (j - 1)] = np.array([1, 3, 3, 1]) / 8
        f = np.convolve(f, h)
    g = np.zeros(2 ** (level - 1) + 1)
    g[0], g[-1] = 2.0, -2.0
    return np.convolve(y, np.convolve(f, g), mode="same")


def _modulus_maxima(w: np.ndarray, a: int, b: int) -> np.ndarray:
    aw = np.abs(w)
    i = np.arange(max(a, 1), min(b, len(w) - 1))
    return i[(aw[i] > aw[i - 1]) & (aw[i] >= aw[i + 1])]


def _boundary(w: np.ndarray, n: int, xi: float, step: int, window: int) -> int:
    """From the maximum ``n``, the first sample whose modulus is under ``xi`` or at a local minimum."""
    aw, i = np.abs(w), n + step
    while abs(i - n) < window and 1 <= i < len(w) - 1:
        if aw[i] < xi or (aw[i] <= aw[i - 1] and aw[i] <= aw[i + 1]):
            return i
        i += step
    return i


def lead_qrs(y: np.ndarray, r: int, fs: float) -> tuple[int, int] | None:
    """One lead's QRS onset and offset on its median beat (Martínez 2004); None when it has no QRS maximum."""
    w = quadratic_spline_wt(y, fs)
    half, chain = int(QRS_HALF_S * fs), int(CHAIN_S * fs)
    peak = float(np.abs(w[r - half:r + half]).max())
    mm = _modulus_maxima(w, r - int(SEARCH_S * fs), r + int(SEARCH_S * fs))
    main = [m for m in mm if abs(m - r) <= half and abs(w[m]) >= MAIN_OF_PEAK * peak]
    if not main:
        return None
    first, last = min(main), max(main)
    for m in mm[mm < first][::-1]:
        if first - m > chain:
            break
        if abs(w[m]) >= GAMMA_PRE * peak:
            first = int(m)
    for m in mm[mm > last]:
        if m - last > chain:
            break
        if abs(w[m]) >= GAMMA_POST * peak:
            last = int(m)
    window = int(LIMIT_S * fs)
    on = _boundary(w, first, (XI_ON if w[first] > 0 else XI_ON_NEG) * abs(w[first]), -1, window)
    off = _boundary(w, last, (XI_OFF if w[last] > 0 else XI_OFF_NEG) * abs(w[last]), 1, window)
    return on, off


def _combine(values: list[int], how: str, earliest: bool, fs: float) -> int:
    ordered = sorted(values, reverse=not earliest)
    if how == "min":
        return ordered[0]
    if how in ("2nd", "3rd"):
        return ordered[min(int(how[0]) - 1, len(ordered) - 1)]
    if how == "robust":
        return measure_module._robust_extreme(values, OUTLIER_S * fs, earliest)
    return int(np.median(values))


def per_lead_qrs(how: str) -> Callable:
    def qrs(med_dl: np.ndarray, med: np.ndarray, r: int, fs: float, convention: str):
        found = [b for b in (lead_qrs(y, r, fs) for y in med) if b is not None]  # (12, 100 Hz) median beats
        on = _combine([b[0] for b in found], how, True, fs)
        off = _combine([b[1] for b in found], how, False, fs)
        return on, off, [on] * len(med), [off] * len(med)
    return qrs


def spatial_qrs(med_dl: np.ndarray, med: np.ndarray, r: int, fs: float, convention: str):
    modulus = np.abs(np.stack([quadratic_spline_wt(y, fs) for y in med])).max(axis=0)  # (samples,)
    half = int(QRS_HALF_S * fs)
    peak = float(modulus[r - half:r + half].max())
    gap = max(1, int(measure_module.QRS_GAP_S * fs))
    a, b = r - int(measure_module.QRS_SEARCH_S[0] * fs), r + int(measure_module.QRS_SEARCH_S[1] * fs)
    on = measure_module._walk(modulus, r, -1, XI_ON * peak, a, gap)
    off = measure_module._walk(modulus, r, 1, XI_OFF * peak, b, gap) + 1
    return on, off, [on] * len(med), [off] * len(med)


VARIANTS: dict[str, Callable] = {
    **{f"lead-{how}": per_lead_qrs(how) for how in ("min", "2nd", "3rd", "robust", "median")},
    "spatial": spatial_qrs,
}


def bounds(data_dir: Path = DEFAULT_DIR) -> dict[str, dict[str, dict]]:
    """The shipped QRS with one boundary replaced by the annotators' own, record by record (their median over the
    beats): per half, the median |QRS error| (ms) and how many records without a wide-QRS diagnosis read wide."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        bench(data_dir, out=f.name, convention="exact")
        rows = [r for r in json.loads(Path(f.name).read_text())["records"]
                if r["ours"]["qrs_ms"] is not None and r["fiducial_error_ms"]["qrs_on"] is not None]
    cases = {"annotators' onset": lambda r: r["ours"]["qrs_ms"] + r["fiducial_error_ms"]["qrs_on"],
             "annotators' offset": lambda r: r["ours"]["qrs_ms"] - r["fiducial_error_ms"]["qrs_off"],
             "as shipped": lambda r: r["ours"]["qrs_ms"]}
    out: dict[str, dict[str, dict]] = {}
    for case, qrs in cases.items():
        out[case] = {}
        for half, part in HALVES:
            sel = [r for r in rows if part(r["id"])]
            errs = [qrs(r) - r["ref"]["qrs_ms"] for r in sel if r["ref"]["qrs_ms"] is not None]
            out[case][half] = {"qrs_median_abs": float(np.median(np.abs(errs))),
                               "false_wide_qrs": sum(not r["wide_dx"] and qrs(r) >= WIDE_QRS_MS for r in sel)}
            if case == "annotators' onset":  # PR and QT start there too
                for k, sign in (("pr_ms", -1), ("qt_ms", 1)):
                    errs = [r["ours"][k] + sign * r["fiducial_error_ms"]["qrs_on"] - r["ref"][k] for r in sel
                            if r["ours"][k] is not None and r["ref"][k] is not None]
                    out[case][half][f"{k[:2]}_median_abs"] = float(np.median(np.abs(errs)))
        print(f"  {case:<20}" + " | ".join(
            f"{half}: QRS {v['qrs_median_abs']:.1f} ms, {v['false_wide_qrs']} false wide"
            + (f" (PR {v['pr_median_abs']:.1f}, QT {v['qt_median_abs']:.1f} ms)" if "pr_median_abs" in v else "")
            for half, v in out[case].items()))
    return out


@contextlib.contextmanager
def qrs_delineator(qrs: Callable) -> Iterator[None]:
    """mlcore.measure with ``qrs`` for its global QRS boundaries, for the length of the block."""
    shipped = measure_module._qrs
    measure_module._qrs = qrs
    try:
        yield
    finally:
        measure_module._qrs = shipped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.qrs_wavelet_experiment", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="LUDB folder (with data/ and ludb.csv)")
    ap.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)} or bounds (default: all)")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants if v not in (*VARIANTS, "bounds")]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; one of {', '.join(VARIANTS)}")
    for name in args.variants or [*VARIANTS, "bounds"]:
        print(f"== QRS boundaries: {name}")
        if name == "bounds":
            bounds(args.data_dir)
            continue
        with qrs_delineator(VARIANTS[name]):
            bench(args.data_dir, convention="exact")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
