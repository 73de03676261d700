"""Global ECG measurements (rate, PR, QRS, QT, QTc, frontal axes, ST levels) from a 12-lead signal.

:func:`measure` works at the signal's own sampling rate, the way the interpretation programs do (GE 12SL, Philips
DXL, Glasgow): find the beats, keep those of the dominant shape, build one median beat per lead, delineate the
median beats, and take the global fiducials across the leads: PR from the earliest P onset to the earliest QRS
onset, QRS from the earliest QRS onset to the latest QRS offset, QT from the earliest QRS onset to the latest T
offset. A value that cannot be measured is None, with the reason in ``reasons``. The result is a JSON-ready dict
(numbers, strings, lists, None), to be stored per ECG as it is. No Django import.

The QRS boundaries come in two conventions (CONVENTIONS below): "exact", the default and what the product shows,
finds the true boundaries of a clean signal and agrees with the devices' own programs on real exports (QRS and QT;
``python -m training.bench_measure`` prints the comparison); "ludb" agrees with LUDB's cardiologists (earliest onset
/ latest offset of their per-lead marks) and reads 20-40 ms wider than the global QRS that programs report.
bench_measure compares both with LUDB; P and T are delineated the same way in both.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.signal import find_peaks, sosfiltfilt

from mlcore.filters import butter_sos
from mlcore.preprocess import LEADS

VERSION = "measure-1"
MIN_FS = 100.0
MIN_BEATS = 3  # a median of fewer beats is not representative

# Filters, all zero-phase. A 0.67 Hz high-pass removes baseline wander without distorting the ST segment when it is
# applied forwards and backwards (Kligfield P et al., AHA/ACC/HRS Recommendations for the Standardization and
# Interpretation of the ECG, Part I, Circulation 2007;115:1306). Delineation reads a 40 Hz low-passed copy; the
# amplitudes (ST levels, axes, median beats) keep up to 100 Hz or the rate allows.
HIGHPASS_HZ = 0.67
DELINEATION_LOWPASS_HZ = 40.0
AMPLITUDE_LOWPASS_HZ = 100.0

# Beats: QRS energy lies in 8-25 Hz. Two beats are at least 250 ms apart (240/min); a peak of the summed envelope
# counts when it reaches 30% of the record's 99th percentile and 40% of the median beat's peak.
QRS_BAND_HZ = (8.0, 25.0)
MIN_RR_S = 0.25
PEAK_OF_TOP = 0.3
PEAK_OF_MEDIAN = 0.4
ALIGN_HALF_S = 0.1  # beats are aligned on the QRS +- this, by cross-correlation with the template
ALIGN_SHIFT_S = 0.03
DOMINANT_CORR = 0.85  # a beat whose QRS correlates less with the template is ectopic or noise
WINDOW_PRE_S = 0.5
WINDOW_POST_S = 0.8

# The 8 independent leads (the other four limb leads are their sums); the spatial velocity is taken over these.
INDEPENDENT = tuple(LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"))
# Global QRS onset and offset come from the spatial velocity of the median beats over the independent leads, in one
# of two conventions, because LUDB's reference and a clean signal's true boundaries disagree by about 20 ms each side:
# - "exact" (the default): see below. On the real exports in ../shared/ecg_samples (GE MUSE, Philips, DICOM, SCP) it
#   read QRS 92/80/72/114 ms where the devices printed 96/84/75/120 ("ludb": 122/112/105/140), and QT 444/348/386/428
#   against 452/352/368/420 ("ludb": 462/370/407/448).
# - "ludb": velocity smoothed over 20 ms, walking out from the QRS until it stays 4 ms under 4% of its
#   QRS peak above the quiet PR / ST level, then moved out by 14 ms (onset) and 6 ms (offset), the distance to
#   LUDB's earliest-onset / latest-offset across the 12 annotated leads on records 1-100 (median |error| 8 ms).
#   Its QRS reads a clean synthetic 90 ms QRS as about 130 ms, and 22 of the 50 LUDB records without a conduction
#   abnormality or pacing as >= 120 ms (the annotators' own union: 28 of 50). The union of per-lead marks is wider
#   than the global QRS that interpretation programs report, so QRS-duration criteria read on it over-call.
# - "exact": the unsmoothed velocity of the 100 Hz median beats, the same crossing, then out while it stays 3% of the
#   QRS peak (or 3x the quiet segment's spread) above the quiet level: within a sample of a clean synthetic QRS at
#   250 and 500 Hz, but 26 ms narrower than LUDB's union (median |error| 26 ms there).
# Against LUDB's own diagnoses (ludb.csv), QRS >= 120 ms read "exact" finds 12 of the 15 complete bundle-branch
# blocks, conduction delays and paced rhythms and calls 3 of the other 80 wide; read "ludb", 14 of 15 and 42 of 80
# (training/bench_measure.py prints both). Lower thresholds, smoothing or per-lead onsets (tried on records 1-100)
# move the onset at most 8 ms towards LUDB's without losing the synthetic QRS's true boundaries: LUDB's earliest
# per-lead onset lies where no lead departs from the PR level by more than the noise.
# (The earliest / latest of per-lead boundaries, as neurokit2 0.2.13's wavelet delineator gives them lead by lead,
# was 42-160 ms off LUDB; see training/bench_measure.py.)
CONVENTIONS = ("exact", "ludb")
DEFAULT_CONVENTION = "exact"
SV_SMOOTH_S = 0.02
QRS_FRACTION = 0.04
QRS_GAP_S = 0.004
QRS_ON_SHIFT_S = 0.014
QRS_OFF_SHIFT_S = 0.006
EXACT_FRACTION = 0.03
NOISE_K = 3.0
QRS_SEARCH_S = (0.15, 0.2)  # before and after the alignment point
LEAD_FRACTION = 0.05  # per-lead QRS bounds (for the plot only): the lead's own slope, 5% of its QRS peak
# P and T waves are delineated on a 15 Hz copy (they carry nothing above; a notch or noise is not taken for the
# steepest point), as one wave for all leads: the peak of the RMS over the leads, then each lead's own peak within
# P_NEAR_S / T_NEAR_S of it, each lead's boundary by the trapezium method (see _trapezium), and the earliest onset /
# latest offset across the leads once those far from the others' (a U wave, noise) are set aside.
WAVE_LOWPASS_HZ = 15.0
# T wave: it peaks 80 ms past the QRS offset at least, 500 ms past the QRS at most and 250 ms before the next one;
# it ends within 700 ms of the QRS, 150 ms before the next one and before the next P wave. A lead counts when its T
# reaches 30 µV and a quarter of the tallest T; its peak is the first RMS peak of half the largest (a tall P wave of
# the next beat can come later).
T_FROM_S = 0.08
T_PEAK_MAX_S = 0.5
T_PEAK_BEFORE_NEXT_S = 0.25
T_END_MAX_S = 0.7
T_BEFORE_NEXT_S = 0.15
T_MIN_MV = 0.03
T_MIN_OF_MAX = 0.25
MAJOR_OF_MAX = 0.5
T_NEAR_S = 0.08
T_REF_S = 0.15  # the trapezium's reference point lies this far past the steepest point of the T downslope
T_OUTLIER_S = 0.04
# P wave: sought in the 350 ms (at most half the RR interval) before the QRS onset, peaking 40 ms before it at the
# latest; the last RMS peak of half the largest (the previous T wave can come earlier). A lead counts when its P
# reaches 25 µV and 30% of the tallest P.
P_SEARCH_S = 0.35
P_SEARCH_RR = 0.5
P_PEAK_BEFORE_QRS_S = 0.04
P_MIN_MV = 0.025
P_MIN_OF_MAX = 0.3
P_NEAR_S = 0.04
P_REF_S = 0.08
P_OUTLIER_S = 0.03
P_FLAT_OF_AMP = 0.02  # a lead's P starts where its 40 Hz trace leaves the level at the trapezium point by 2% of P
# A P wave is there when single beats resemble the median P (+-60 ms around its peak) in the three leads where it is
# largest: median correlation 0.8, or 0.95 when the rhythm is irregular (median successive RR difference over 15% of
# the median RR), where f waves of atrial fibrillation can average into a P-like bump. On LUDB records 1-100 (dev set)
# every record with annotated P waves kept its PR; all 9 with atrial fibrillation and 1 of 2 with flutter got none
# (flutter waves at fixed 2:1 conduction are as consistent as P waves), and so did the 3 paced sinus records whose
# P waves the annotators did not mark (the atrially paced one, 45, kept a PR).
P_WINDOW_S = 0.06
P_MIN_CORR = 0.8
P_MIN_CORR_IRREGULAR = 0.95
IRREGULAR_RR = 0.15
# ST level: the isoelectric reference is the mean of the 20 ms before the QRS onset (the end of the PR segment). A
# lead's ST level is withheld when single beats spread by more than 100 µV (median absolute deviation) at J.
BASELINE_S = (0.02, 0.004)
ST_LATE_S = 0.06  # J+60 ms
ST_NOISE_MV = 0.1

KEYS = ("heart_rate_bpm", "rr_ms", "p_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
        "qtc_framingham_ms", "qtc_hodges_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg", "st_j_uv", "st_j60_uv")
QT_KEYS = ("qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms", "qtc_hodges_ms", "t_axis_deg")
P_KEYS = ("pr_ms", "p_ms", "p_axis_deg")


def _sos(fs: float, low: float | None, high: float | None) -> np.ndarray:
    high = None if high is None else min(high, 0.45 * fs)
    if low and high:
        return butter_sos(2, (low, high), btype="band", fs=fs)
    return butter_sos(2, low or high, btype="high" if low else "low", fs=fs)


def filtered(signal: np.ndarray, fs: float, lowpass: float) -> np.ndarray:
    """(12, n) mV, 0.67 Hz high-passed and low-passed at ``lowpass``, both zero-phase."""
    return sosfiltfilt(_sos(fs, HIGHPASS_HZ, lowpass), signal, axis=-1)


def frontal_axis(area_i: float, area_avf: float) -> float | None:
    """Frontal-plane axis in degrees (-180, 180] from net areas in I and aVF.

    On Einthoven's triangle lead I reads the x component and aVF reads sqrt(3)/2 of the y component (+90°
    downwards), so aVF is scaled back before the angle is taken.
    """
    if area_i == 0 and area_avf == 0:
        return None
    return math.degrees(math.atan2(area_avf * 2 / math.sqrt(3), area_i))


def detect_beats(x: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the QRS complexes, from the envelope of the QRS band summed over the leads."""
    band = sosfiltfilt(_sos(fs, QRS_BAND_HZ[0], QRS_BAND_HZ[1]), x, axis=-1)
    env = np.abs(band).sum(axis=0)  # (n,) one lead cannot hide the beats
    win = max(1, int(round(0.04 * fs)))
    env = np.convolve(env, np.ones(win) / win, mode="same")
    top = np.percentile(env, 99)
    if top <= 0:
        return np.zeros(0, dtype=int)
    peaks, props = find_peaks(env, distance=max(1, int(MIN_RR_S * fs)), height=PEAK_OF_TOP * top)
    if len(peaks) == 0:
        return peaks
    return peaks[props["peak_heights"] >= PEAK_OF_MEDIAN * np.median(props["peak_heights"])]


def _align(x: np.ndarray, peaks: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Shift each beat to best match the median QRS; returns the aligned positions and each beat's correlation."""
    half, shift = int(ALIGN_HALF_S * fs), int(ALIGN_SHIFT_S * fs)
    ok = (peaks - half - shift >= 0) & (peaks + half + shift < x.shape[1])
    peaks = peaks[ok]
    if len(peaks) == 0:
        return peaks, np.zeros(0)
    for _ in range(2):
        segs = np.stack([x[:, p - half:p + half] for p in peaks])  # (beats, 12, 2*half)
        template = np.median(segs, axis=0)
        t = template - template.mean(axis=1, keepdims=True)  # (12, 2*half)
        # Every beat at every shift at once: (beats, 12, 2*shift+1, 2*half) windows of the record, each made
        # zero-mean per lead, scored by its dot product with the template (the loop over beats and shifts this
        # replaces was half of the measurement's time).
        spans = np.stack([x[:, p - half - shift:p + half + shift] for p in peaks])
        win = np.lib.stride_tricks.sliding_window_view(spans, 2 * half, axis=2)
        scores = np.einsum("blsj,lj->bs", win - win.mean(axis=3, keepdims=True), t)
        # Kept where the next pass can still shift it both ways (a beat at the record's edge moved outwards
        # would leave an empty segment: 5 of PTB-XL's first 2,500 records crashed here).
        peaks = np.clip(peaks + np.argmax(scores, axis=1) - shift, half + shift, x.shape[1] - half - shift - 1)
    segs = np.stack([x[:, p - half:p + half] for p in peaks]).reshape(len(peaks), -1)
    template = np.median(segs, axis=0)
    a = segs - segs.mean(axis=1, keepdims=True)
    b = template - template.mean()
    with np.errstate(invalid="ignore", divide="ignore"):  # a flat beat: no correlation (nan), as np.corrcoef
        corr = (a @ b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b))
    return peaks, corr


def _trapezium(y: np.ndarray, xm: int, xr: int) -> int:
    """Wave end (xr > xm) or onset (xr < xm) by the trapezium method: the point of largest area between the
    curve's steepest point xm and a reference point xr beyond the boundary (Vázquez-Seisdedos CR et al.,
    BioMed Eng OnLine 2011;10:93)."""
    if xr == xm:
        return xm
    ti = np.arange(min(xm, xr), max(xm, xr) + 1)
    area = (y[xm] - y[ti]) * (2 * xr - ti - xm) * (1 if xr > xm else -1)
    return int(ti[np.argmax(np.abs(area))])


def _wave_end(y: np.ndarray, peak: int, stop: int, ref: int) -> int:
    """End of the wave peaking at ``peak`` (search up to ``stop``)."""
    d = np.diff(y[peak:stop + 1])
    if len(d) == 0:
        return peak
    xm = peak + int(np.argmax(-d * np.sign(y[peak] - y[stop])))
    return _trapezium(y, xm, min(stop, xm + ref))


def _wave_start(y: np.ndarray, peak: int, start: int, ref: int) -> int:
    d = np.diff(y[start:peak + 1])
    if len(d) == 0:
        return peak
    xm = start + 1 + int(np.argmax(d * np.sign(y[peak])))  # y is relative to the baseline
    return _trapezium(y, xm, max(start, xm - ref))


def _walk(v: np.ndarray, start: int, step: int, thr: float, limit: int, gap: int) -> int:
    """From ``start``, the last index before ``v`` stays under ``thr`` for ``gap`` samples (or ``limit``)."""
    i, below, last = start, 0, start
    while i != limit:
        if v[i] >= thr:
            last, below = i, 0
        else:
            below += 1
            if below >= gap:
                break
        i += step
    return last


def _major_peak(e: np.ndarray, last: bool = False) -> int | None:
    """The first (or last) local maximum of ``e`` reaching MAJOR_OF_MAX of the largest one; None if it has none."""
    peaks, _ = find_peaks(e)
    if len(peaks) == 0:
        return None
    big = peaks[e[peaks] >= MAJOR_OF_MAX * float(e[peaks].max())]
    return int(big[-1] if last else big[0])


def _bounds(v: np.ndarray, r: int, fs: float, fraction: float, scan: bool = False) -> tuple[int, int]:
    """QRS onset and offset on a velocity curve ``v`` around the alignment point ``r``.

    The quietest points on either side (PR and ST segments) bound the search; the threshold is ``fraction`` of the
    QRS peak above the quiet level. Walking out from ``r`` (the spatial velocity never drops to the quiet level
    inside the QRS), or, with ``scan``, in from the quiet points (a single lead's slope is zero at each peak).
    """
    peak = float(v[r - int(0.04 * fs):r + int(0.04 * fs)].max())
    a, b, m = r - int(QRS_SEARCH_S[0] * fs), r + int(QRS_SEARCH_S[1] * fs), max(1, int(0.01 * fs))
    lo = a + int(np.argmin(v[a:r - m]))
    hi = r + m + int(np.argmin(v[r + m:b]))
    thr_on, thr_off = v[lo] + fraction * (peak - v[lo]), v[hi] + fraction * (peak - v[hi])
    if scan:
        up = np.flatnonzero(v[lo:r + 1] >= thr_on)
        down = np.flatnonzero(v[r:hi + 1] >= thr_off)
        return (lo + int(up[0]) if len(up) else r), (r + int(down[-1]) + 1 if len(down) else r)
    gap = max(1, int(QRS_GAP_S * fs))
    return _walk(v, r, -1, thr_on, lo, gap), _walk(v, r, 1, thr_off, hi, gap) + 1


def _extend(v: np.ndarray, i: int, step: int, thr: float, limit: int) -> int:
    """From a boundary ``i``, further out along ``v`` while it stays above ``thr``."""
    while i + step != limit and v[i + step] > thr:
        i += step
    return i


def _qrs(med_dl: np.ndarray, med: np.ndarray, r: int, fs: float,
         convention: str) -> tuple[int, int, list[int], list[int]]:
    """Global QRS onset and offset (see CONVENTIONS), and each lead's own (for the plot)."""
    if convention == "ludb":
        raw = np.sqrt((np.diff(med_dl[list(INDEPENDENT)], axis=1) ** 2).sum(axis=0))  # (L-1,) spatial velocity
        k = max(1, int(round(SV_SMOOTH_S * fs)))
        on, off = _bounds(np.convolve(raw, np.ones(k) / k, mode="same"), r, fs, QRS_FRACTION)
        on, off = on - int(round(QRS_ON_SHIFT_S * fs)), off + int(round(QRS_OFF_SHIFT_S * fs))
    else:  # "exact"
        raw = np.sqrt((np.diff(med[list(INDEPENDENT)], axis=1) ** 2).sum(axis=0))
        on, off = _bounds(raw, r, fs, QRS_FRACTION)
        # Then out along the velocity while it stays above the quiet level by 3% of the QRS peak, or three times
        # the quiet segment's own spread (noise), whichever is larger.
        peak = float(raw[r - int(0.04 * fs):r + int(0.04 * fs)].max())
        a, b, m, w = (r - int(QRS_SEARCH_S[0] * fs), r + int(QRS_SEARCH_S[1] * fs), max(1, int(0.01 * fs)),
                      max(1, int(0.01 * fs)))
        lo, hi = a + int(np.argmin(raw[a:r - m])), r + m + int(np.argmin(raw[r + m:b]))
        for side in ("on", "off"):
            quiet = raw[max(0, lo - w):lo + w] if side == "on" else raw[hi - w:hi + w]
            level = float(np.median(quiet))
            thr = level + max(EXACT_FRACTION * peak, NOISE_K * float(np.median(np.abs(quiet - level))))
            if side == "on":
                on = _extend(raw, on, -1, thr, lo)
            else:
                off = _extend(raw, off - 1, 1, thr, hi) + 1
    lead_on, lead_off = [], []
    for y in med_dl:
        a, b = _bounds(np.abs(np.diff(y)), r, fs, LEAD_FRACTION, scan=True)
        lead_on.append(min(max(a, on), off))
        lead_off.append(max(min(b, off), on))
    return on, off, lead_on, lead_off


def _robust_extreme(values: list[int], limit: float, earliest: bool) -> int:
    """The earliest (or latest) value once those further than ``limit`` from the median are set aside."""
    mid = float(np.median(values))
    if earliest:
        return min(v for v in values if v >= mid - limit)
    return max(v for v in values if v <= mid + limit)


def _p_wave(smooth: np.ndarray, fine: np.ndarray, beats: np.ndarray, qrs_on: int, rr: float, irregular: bool,
            fs: float, not_before: int = 1) -> tuple[int | None, int | None, dict[str, tuple[int, int]], str | None]:
    """Global P onset and offset, per-lead (onset, offset), or None and the reason there is no P wave."""
    p_from = max(1, not_before, qrs_on - int(min(P_SEARCH_S, P_SEARCH_RR * rr) * fs))
    p_to = qrs_on - int(0.01 * fs)
    p_peak_to = qrs_on - int(P_PEAK_BEFORE_QRS_S * fs)
    none = "no consistent P wave before the QRS (atrial fibrillation or flutter, junctional rhythm, or noise)"
    if p_peak_to - p_from < int(0.04 * fs):
        return None, None, {}, "no room for a P wave before the QRS"
    g = _major_peak(np.sqrt((smooth[:, p_from:p_peak_to] ** 2).mean(axis=0)), last=True)
    if g is None:
        return None, None, {}, none
    g += p_from
    a, b = max(p_from, g - int(P_NEAR_S * fs)), min(p_peak_to, g + int(P_NEAR_S * fs))
    pps = a + np.argmax(np.abs(smooth[:, a:b]), axis=1)  # (12,)
    amps = np.abs(smooth[np.arange(len(LEADS)), pps])
    c0, c1 = max(p_from, g - int(P_WINDOW_S * fs)), min(p_to, g + int(P_WINDOW_S * fs))
    cc = []
    for i in np.argsort(amps)[-3:]:
        m = smooth[i, c0:c1]
        for beat in beats[:, i, c0:c1]:  # (beats, 12, L) -> (c1 - c0,)
            cc.append(float(np.corrcoef(beat, m)[0, 1]) if beat.std() > 0 and m.std() > 0 else 0.0)
    if amps.max() < P_MIN_MV or np.median(cc) < (P_MIN_CORR_IRREGULAR if irregular else P_MIN_CORR):
        return None, None, {}, none
    per_lead = {}
    for i, lead in enumerate(LEADS):
        if amps[i] >= max(P_MIN_MV, P_MIN_OF_MAX * amps.max()):
            on = _wave_start(smooth[i], int(pps[i]), p_from, int(P_REF_S * fs))
            # The trapezium can land in the flat stretch before the wave; start where the lead leaves that level.
            level = fine[i, on]
            while on < pps[i] and abs(fine[i, on + 1] - level) < P_FLAT_OF_AMP * amps[i]:
                on += 1
            per_lead[lead] = (on, _wave_end(smooth[i], int(pps[i]), p_to, int(P_REF_S * fs)))
    lim = P_OUTLIER_S * fs
    return (_robust_extreme([v[0] for v in per_lead.values()], lim, earliest=True),
            _robust_extreme([v[1] for v in per_lead.values()], lim, earliest=False), per_lead, None)


def _t_wave(smooth: np.ndarray, r: int, qrs_off: int, rr: float, next_p_on: int | None,
            fs: float) -> tuple[int | None, dict[str, int]]:
    """Global T offset and each lead's, or None when no T wave stands out."""
    t_stop = min(r + int(min(T_END_MAX_S, rr - T_BEFORE_NEXT_S) * fs), smooth.shape[1] - 1)
    if next_p_on is not None:
        t_stop = min(t_stop, next_p_on)
    t_from = qrs_off + int(T_FROM_S * fs)
    t_peak_to = min(r + int(min(T_PEAK_MAX_S, rr - T_PEAK_BEFORE_NEXT_S) * fs), t_stop - int(0.03 * fs))
    if t_peak_to <= t_from:
        return None, {}
    g = _major_peak(np.sqrt((smooth[:, t_from:t_peak_to] ** 2).mean(axis=0)))
    g = t_from + (int(np.argmax(np.abs(smooth[:, t_from:t_peak_to]).max(axis=0))) if g is None else g)
    a, b = max(t_from, g - int(T_NEAR_S * fs)), min(t_peak_to, g + int(T_NEAR_S * fs))
    tps = a + np.argmax(np.abs(smooth[:, a:b]), axis=1)  # (12,)
    amps = np.abs(smooth[np.arange(len(LEADS)), tps])
    ends = {lead: _wave_end(smooth[i], int(tps[i]), t_stop, int(T_REF_S * fs)) for i, lead in enumerate(LEADS)
            if amps[i] >= max(T_MIN_MV, T_MIN_OF_MAX * amps.max())}
    if not ends:
        return None, {}
    return _robust_extreme(list(ends.values()), T_OUTLIER_S * fs, earliest=False), ends


def _axis(med: np.ndarray, base: np.ndarray, a: int, b: int, fs: float) -> int | None:
    """Frontal axis from the net areas of leads I and aVF between samples a and b of the median beats."""
    rows = [LEADS.index("I"), LEADS.index("aVF")]
    area = (med[rows, a:b] - base[rows, None]).sum(axis=1) / fs  # (2,) mV·s
    ang = frontal_axis(float(area[0]), float(area[1]))
    return None if ang is None else round(ang)


def _empty(reason: str, fs: float | None = None) -> dict:
    return {**{k: None for k in KEYS}, "reasons": {k: reason for k in KEYS}, "version": VERSION, "fs": fs,
            "median_beats": None, "fiducials": None, "beats": None}


def measure(signal: np.ndarray, fs: float, convention: str = DEFAULT_CONVENTION) -> dict:
    """Measure a (12, n) mV signal in LEADS order at its native rate ``fs`` (>= 100 Hz).

    Returns a JSON-ready dict: the measurements named in ``KEYS`` (ms, bpm, degrees; ``st_j_uv`` and ``st_j60_uv``
    are {lead: µV or None}), each a number or None, ``reasons`` {key: why it is None (or partly None)},
    ``median_beats`` (mV per lead at ``fs``; ``r`` is the sample where the beats were aligned), ``fiducials``
    (global and per-lead sample indices into the median beats) and ``beats`` (QRS sample indices in the signal,
    all and those of the dominant shape that went into the median). ``convention`` picks the QRS boundaries
    (see CONVENTIONS): "exact" by default, "ludb" to compare with LUDB's annotators.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; one of {CONVENTIONS}")
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise ValueError(f"expected ({len(LEADS)}, n) samples, got {x.shape}")
    if fs < MIN_FS:
        return _empty(f"sampled at {fs:g} Hz; measurements need at least {MIN_FS:g} Hz")
    if not np.isfinite(x).all():
        return _empty("the signal has missing (non-finite) samples", fs)
    pre, post = int(WINDOW_PRE_S * fs), int(WINDOW_POST_S * fs)
    if x.shape[1] < pre + post + 2 * int(MIN_RR_S * fs):
        return _empty(f"{x.shape[1] / fs:.1f} s is too short to measure", fs)
    dl = filtered(x, fs, DELINEATION_LOWPASS_HZ)
    amp = filtered(x, fs, AMPLITUDE_LOWPASS_HZ)
    peaks = detect_beats(dl, fs)
    if len(peaks) < MIN_BEATS:
        return _empty(f"{len(peaks)} beats found; at least {MIN_BEATS} are needed", fs)
    rr_samples = np.diff(peaks)
    rr = float(np.median(rr_samples)) / fs  # s, over all beats: the ventricular rate
    irregular = float(np.median(np.abs(np.diff(rr_samples)))) / float(np.median(rr_samples)) > IRREGULAR_RR
    aligned, corr = _align(dl, peaks.copy(), fs)
    fits = (aligned - pre >= 0) & (aligned + post <= x.shape[1])
    dominant = aligned[(corr >= DOMINANT_CORR) & fits]
    beats = {"qrs": [int(p) for p in peaks], "dominant": [int(p) for p in dominant]}
    if len(dominant) < MIN_BEATS:
        # Without beats of one shape the "beats" are as likely noise as QRS complexes: no rate either.
        out = _empty(f"{len(dominant)} beats of the dominant shape (noise, or no consistent QRS); at least "
                     f"{MIN_BEATS} are needed", fs)
        out["beats"] = beats
        return out

    beats_dl = np.stack([dl[:, p - pre:p + post] for p in dominant])  # (beats, 12, pre + post)
    beats_amp = np.stack([amp[:, p - pre:p + post] for p in dominant])
    med_dl, med = np.median(beats_dl, axis=0), np.median(beats_amp, axis=0)  # (12, pre + post)
    r = pre  # the alignment point in the median beats

    qrs_on, qrs_off, lead_on, lead_off = _qrs(med_dl, med, r, fs, convention)
    b0, b1 = qrs_on - int(BASELINE_S[0] * fs), qrs_on - int(BASELINE_S[1] * fs) + 1
    base_dl, base = med_dl[:, b0:b1].mean(axis=1), med[:, b0:b1].mean(axis=1)  # (12,) mV
    lp = _sos(fs, None, WAVE_LOWPASS_HZ)
    smooth = sosfiltfilt(lp, med_dl, axis=-1) - base_dl[:, None]  # (12, pre + post)
    smooth_beats = sosfiltfilt(lp, beats_dl, axis=-1)
    p_on, p_off, p_leads, p_reason = _p_wave(smooth, med_dl, smooth_beats, qrs_on, rr, irregular, fs)
    next_p = None if p_on is None else p_on + int(rr * fs)
    t_off, t_leads = _t_wave(smooth, r, qrs_off, rr, next_p, fs)
    prev_t_off = None if t_off is None else t_off - int(rr * fs)  # the previous beat's T offset
    if p_on is not None and prev_t_off is not None and p_on < prev_t_off:
        # What was taken for the P wave is the end of the previous T wave: look again after it.
        p_on, p_off, p_leads, p_reason = _p_wave(smooth, med_dl, smooth_beats, qrs_on, rr, irregular, fs,
                                                 not_before=prev_t_off)
        t_off, t_leads = _t_wave(smooth, r, qrs_off, rr, None if p_on is None else p_on + int(rr * fs), fs)

    ms = 1000 / fs
    out: dict = {k: None for k in KEYS}
    reasons: dict[str, str] = {}
    out["rr_ms"] = round(rr * 1000)
    out["heart_rate_bpm"] = round(60 / rr)
    out["qrs_ms"] = round((qrs_off - qrs_on) * ms)
    out["qrs_axis_deg"] = _axis(med, base, qrs_on, qrs_off, fs)
    if p_on is None:
        reasons.update({k: p_reason for k in P_KEYS})
    else:
        out["pr_ms"] = round((qrs_on - p_on) * ms)
        out["p_ms"] = round((p_off - p_on) * ms)
        out["p_axis_deg"] = _axis(med, med[:, p_on], p_on, p_off, fs)  # P relative to its own onset (TP level)
    if t_off is None:
        reasons.update({k: "no T wave stands out from the baseline in any lead" for k in QT_KEYS})
    else:
        qt, hr = (t_off - qrs_on) * ms, 60 / rr
        out["qt_ms"] = round(qt)
        out["qtc_bazett_ms"] = round(qt / math.sqrt(rr))  # Bazett HC, Heart 1920;7:353
        out["qtc_fridericia_ms"] = round(qt / rr ** (1 / 3))  # Fridericia LS, Acta Med Scand 1920;53:469
        out["qtc_framingham_ms"] = round(qt + 154 * (1 - rr))  # Sagie A et al., Am J Cardiol 1992;70:797
        out["qtc_hodges_ms"] = round(qt + 1.75 * (hr - 60))  # Hodges M et al., J Am Coll Cardiol 1983;1:694
        out["t_axis_deg"] = _axis(med, base, qrs_off, t_off, fs)

    # ST level at J (the global QRS offset) and J+60 ms, per lead, in µV from the PR-segment baseline.
    j60 = min(qrs_off + int(round(ST_LATE_S * fs)), med.shape[1] - 1)
    spread = np.median(np.abs(beats_amp[:, :, qrs_off] - med[None, :, qrs_off]), axis=0)  # (12,) mV
    noisy = [lead for i, lead in enumerate(LEADS) if spread[i] > ST_NOISE_MV]
    for key, at in (("st_j_uv", qrs_off), ("st_j60_uv", j60)):
        out[key] = {lead: None if lead in noisy else round(float(med[i, at] - base[i]) * 1000)
                    for i, lead in enumerate(LEADS)}
        if noisy:
            reasons[key] = f"beats differ by over {ST_NOISE_MV * 1000:.0f} µV at J in {', '.join(noisy)} (noise)"

    per_lead = {lead: {"qrs_on": int(lead_on[i]), "qrs_off": int(lead_off[i]),
                       "p_on": p_leads[lead][0] if lead in p_leads else None,
                       "p_off": p_leads[lead][1] if lead in p_leads else None,
                       "t_off": t_leads.get(lead)} for i, lead in enumerate(LEADS)}
    out.update(
        reasons=reasons, version=VERSION, convention=convention, fs=fs, beats=beats,
        median_beats={"r": r, "leads": {lead: np.round(med[i], 3).tolist() for i, lead in enumerate(LEADS)}},
        fiducials={"p_on": p_on, "p_off": p_off, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_off": t_off, "j60": j60,
                   "per_lead": per_lead},
    )
    return out
