"""Global ECG measurements (rate, PR, QRS, QT, QTc, frontal axes, ST levels) from a 12-lead signal.

:func:`measure` works at the signal's own sampling rate, the way the interpretation programs do (GE 12SL, Philips
DXL, Glasgow): find the beats, keep those of the dominant shape, build one median beat per lead, delineate the
median beats, and take the global fiducials across the leads: PR from the earliest P onset to the earliest QRS
onset, QRS from the earliest QRS onset to the latest QRS offset, QT from the earliest QRS onset to the latest T
offset. A value that cannot be measured is None, with the reason in ``reasons``. The result is a JSON-ready dict
(numbers, strings, lists, None). No Django import.

Validated on LUDB against the cardiologists' boundaries by ``python -m training.bench_measure``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

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
# QRS onset and offset: where the spatial velocity of the median beats falls below a fraction of its QRS peak.
QRS_ON_FRACTION = 0.06
QRS_OFF_FRACTION = 0.06
QRS_GAP_S = 0.01  # a dip shorter than this inside the QRS does not end it
QRS_SEARCH_S = (0.15, 0.2)  # before and after the alignment point
# T and P waves count in a lead when their peak stands this far from the baseline.
T_MIN_MV = 0.08
P_MIN_MV = 0.03
T_REF_S = 0.15  # the trapezium's reference point lies this far past the steepest point of the T downslope
P_REF_S = 0.06
# A P wave is "consistent" when single beats resemble the median P in the leads where it is largest.
P_MIN_CORR = 0.5
P_SEARCH_S = 0.35  # before the QRS onset at most
# ST level: the isoelectric reference is the mean of the 20 ms before the QRS onset (the PR segment's end).
BASELINE_S = (0.02, 0.004)
ST_LATE_S = 0.06  # J+60 ms

KEYS = ("heart_rate_bpm", "rr_ms", "p_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms",
        "qtc_framingham_ms", "qtc_hodges_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg", "st_j_uv", "st_j60_uv")


def _sos(fs: float, low: float | None, high: float | None):
    high = None if high is None else min(high, 0.45 * fs)
    if low and high:
        return butter(2, (low, high), btype="band", fs=fs, output="sos")
    return butter(2, low or high, btype="high" if low else "low", fs=fs, output="sos")


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
    corr = np.zeros(len(peaks))
    for _ in range(2):
        segs = np.stack([x[:, p - half:p + half] for p in peaks])  # (beats, 12, 2*half)
        template = np.median(segs, axis=0)
        t = template - template.mean(axis=1, keepdims=True)
        for k, p in enumerate(peaks):
            scores = []
            for s in range(-shift, shift + 1):
                seg = x[:, p + s - half:p + s + half]
                scores.append(float((t * (seg - seg.mean(axis=1, keepdims=True))).sum()))
            peaks[k] = p + int(np.argmax(scores)) - shift
    segs = np.stack([x[:, p - half:p + half] for p in peaks])
    template = np.median(segs, axis=0).ravel()
    for k in range(len(peaks)):
        corr[k] = np.corrcoef(segs[k].ravel(), template)[0, 1]
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
    xm = start + 1 + int(np.argmax(d * np.sign(y[peak] - y[start])))
    return _trapezium(y, xm, max(start, xm - ref))


def _qrs_bounds(med: np.ndarray, r: int, fs: float) -> tuple[int, int]:
    sv = np.sqrt((np.diff(med[list(INDEPENDENT)], axis=1) ** 2).sum(axis=0))  # (L-1,) spatial velocity
    core = slice(r - int(0.04 * fs), r + int(0.04 * fs))
    peak = float(sv[core].max())
    gap = max(1, int(QRS_GAP_S * fs))
    # The isoelectric PR and ST segments are the quietest points on either side; the QRS ends are sought between
    # them, where the velocity rises above the quiet level by a fraction of the QRS peak.
    lo = r - int(QRS_SEARCH_S[0] * fs) + int(np.argmin(sv[r - int(QRS_SEARCH_S[0] * fs):r - int(0.01 * fs)]))
    hi = r + int(0.01 * fs) + int(np.argmin(sv[r + int(0.01 * fs):r + int(QRS_SEARCH_S[1] * fs)]))

    def walk(start: int, step: int, thr: float, limit: int) -> int:
        i, below = start, 0
        last = start
        while i != limit:
            if sv[i] >= thr:
                last, below = i, 0
            else:
                below += 1
                if below >= gap:
                    break
            i += step
        return last

    on = walk(r, -1, sv[lo] + QRS_ON_FRACTION * (peak - sv[lo]), lo)
    off = walk(r, 1, sv[hi] + QRS_OFF_FRACTION * (peak - sv[hi]), hi) + 1
    return on, off


def _null(reason: str) -> dict:
    out: dict = {k: None for k in KEYS}
    out["reasons"] = {k: reason for k in KEYS}
    out.update(version=VERSION, fs=None, median_beats=None, fiducials=None, beats=None)
    return out


def measure(signal: np.ndarray, fs: float) -> dict:
    """Measure a (12, n) mV signal in LEADS order at its native rate ``fs`` (>= 100 Hz).

    Returns a JSON-ready dict: the measurements named in ``KEYS`` (ms, bpm, degrees, µV; ``st_j_uv`` and
    ``st_j60_uv`` are {lead: µV}), ``reasons`` {key: why it is None}, the median beats (mV, one list per lead,
    at ``fs``) and their fiducials (sample indices into the median beats).
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(LEADS):
        raise ValueError(f"expected ({len(LEADS)}, n) samples, got {x.shape}")
    if fs < MIN_FS:
        return _null(f"sampled at {fs:g} Hz; measurements need at least {MIN_FS:g} Hz")
    if not np.isfinite(x).all():
        return _null("the signal has missing (non-finite) samples")
    dl = filtered(x, fs, DELINEATION_LOWPASS_HZ)
    amp = filtered(x, fs, AMPLITUDE_LOWPASS_HZ)
    peaks = detect_beats(dl, fs)
    if len(peaks) < MIN_BEATS:
        return _null(f"{len(peaks)} beats found; at least {MIN_BEATS} are needed")
    reasons: dict[str, str] = {}
    out: dict = {k: None for k in KEYS}
    rr = float(np.median(np.diff(peaks))) / fs  # s, over all beats: the ventricular rate
    out["rr_ms"] = round(rr * 1000)
    out["heart_rate_bpm"] = round(60 / rr)

    aligned, corr = _align(dl, peaks.copy(), fs)
    pre, post = int(WINDOW_PRE_S * fs), int(WINDOW_POST_S * fs)
    fits = (aligned - pre >= 0) & (aligned + post <= x.shape[1])
    dominant = aligned[(corr >= DOMINANT_CORR) & fits]
    if len(dominant) < MIN_BEATS:
        reason = f"{len(dominant)} beats of the dominant shape; at least {MIN_BEATS} are needed"
        for k in KEYS[2:]:
            out[k], reasons[k] = None, reason
        out.update(reasons=reasons, version=VERSION, fs=fs, median_beats=None, fiducials=None,
                   beats={"qrs": [int(p) for p in peaks], "dominant": []})
        return out
    beats_dl = np.stack([dl[:, p - pre:p + post] for p in dominant])  # (beats, 12, L)
    med_dl = np.median(beats_dl, axis=0)  # (12, L)
    med = np.median(np.stack([amp[:, p - pre:p + post] for p in dominant]), axis=0)  # (12, L)
    r = pre  # the alignment point in the median beat

    qrs_on, qrs_off = _qrs_bounds(med_dl, r, fs)
    b0, b1 = qrs_on - int(BASELINE_S[0] * fs), qrs_on - int(BASELINE_S[1] * fs)
    base_dl = med_dl[:, b0:b1 + 1].mean(axis=1)  # (12,)
    base = med[:, b0:b1 + 1].mean(axis=1)

    # T offset per lead, in the leads where the T wave stands out.
    t_stop = min(r + int(min(0.7 * rr, 0.7) * fs), med_dl.shape[1] - 1)
    t_from = qrs_off + int(0.06 * fs)
    per_lead: dict[str, dict[str, int | None]] = {}
    t_offs = []
    for i, lead in enumerate(LEADS):
        y = med_dl[i] - base_dl[i]
        fid: dict[str, int | None] = {"qrs_on": None, "qrs_off": None, "t_off": None, "p_on": None, "p_off": None}
        if t_from < t_stop - int(0.05 * fs):
            tp = t_from + int(np.argmax(np.abs(y[t_from:t_stop - int(0.05 * fs)])))
            if abs(y[tp]) >= T_MIN_MV:
                fid["t_off"] = _wave_end(y, tp, t_stop, int(T_REF_S * fs))
                t_offs.append(fid["t_off"])
        per_lead[lead] = fid
    t_off = max(t_offs) if t_offs else None

    # P wave: between the previous T wave's end and the QRS onset.
    p_from = qrs_on - int(P_SEARCH_S * fs)
    if t_off is not None:
        p_from = max(p_from, t_off - int(rr * fs) + int(0.02 * fs))
    p_from = max(p_from, 1)
    p_to = qrs_on - int(0.01 * fs)
    p_on = p_off = None
    p_reason = None
    if p_to - p_from < int(0.06 * fs):
        p_reason = "no room for a P wave between the previous T wave and the QRS"
    else:
        amps = np.abs(med_dl[:, p_from:p_to] - base_dl[:, None]).max(axis=1)  # (12,)
        best = np.argsort(amps)[-3:]
        cc = []
        for i in best:
            m = med_dl[i, p_from:p_to]
            for b in beats_dl[:, i, p_from:p_to]:
                cc.append(np.corrcoef(b, m)[0, 1] if b.std() > 0 and m.std() > 0 else 0.0)
        if amps.max() < P_MIN_MV or float(np.median(cc)) < P_MIN_CORR:
            p_reason = "no consistent P wave before the QRS (atrial fibrillation or flutter, junctional rhythm, or noise)"
        else:
            ons, offs = [], []
            for i, lead in enumerate(LEADS):
                if amps[i] < max(P_MIN_MV, 0.3 * amps.max()):
                    continue
                y = med_dl[i] - base_dl[i]
                pp = p_from + int(np.argmax(np.abs(y[p_from:p_to])))
                on = _wave_start(y, pp, p_from, int(P_REF_S * fs))
                off = _wave_end(y, pp, p_to, int(P_REF_S * fs))
                per_lead[lead]["p_on"], per_lead[lead]["p_off"] = on, off
                ons.append(on)
                offs.append(off)
            p_on, p_off = min(ons), max(offs)
    ms = 1000 / fs
    out["qrs_ms"] = round((qrs_off - qrs_on) * ms)
    if p_on is None:
        for k in ("pr_ms", "p_ms", "p_axis_deg"):
            reasons[k] = p_reason
    else:
        out["pr_ms"] = round((qrs_on - p_on) * ms)
        out["p_ms"] = round((p_off - p_on) * ms)
    if t_off is None:
        for k in ("qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "qtc_framingham_ms", "qtc_hodges_ms", "t_axis_deg"):
            reasons[k] = "no T wave stands out from the baseline in any lead"
    else:
        qt = (t_off - qrs_on) * ms
        hr = 60 / rr
        out["qt_ms"] = round(qt)
        out["qtc_bazett_ms"] = round(qt / math.sqrt(rr))  # Bazett HC, Heart 1920;7:353
        out["qtc_fridericia_ms"] = round(qt / rr ** (1 / 3))  # Fridericia LS, Acta Med Scand 1920;53:469
        out["qtc_framingham_ms"] = round(qt + 154 * (1 - rr))  # Sagie A et al., Am J Cardiol 1992;70:797
        out["qtc_hodges_ms"] = round(qt + 1.75 * (hr - 60))  # Hodges M et al., J Am Coll Cardiol 1983;1:694

    # Axes from net areas of the median beats in I and aVF (mV·s, relative to the PR-segment baseline).
    i_i, i_f = LEADS.index("I"), LEADS.index("aVF")

    def axis(a: int, b: int) -> float | None:
        ys = (med[[i_i, i_f], a:b] - base[[i_i, i_f], None]).sum(axis=1) / fs
        ang = frontal_axis(float(ys[0]), float(ys[1]))
        return None if ang is None else round(ang)

    out["qrs_axis_deg"] = axis(qrs_on, qrs_off)
    if p_on is not None:
        p_base = med[[i_i, i_f], p_on]
        ys = (med[[i_i, i_f], p_on:p_off] - p_base[:, None]).sum(axis=1) / fs
        ang = frontal_axis(float(ys[0]), float(ys[1]))
        out["p_axis_deg"] = None if ang is None else round(ang)
    if t_off is not None:
        out["t_axis_deg"] = axis(qrs_off, t_off)

    # ST level at J (the global QRS offset) and J+60 ms, per lead, in µV.
    j60 = qrs_off + int(round(ST_LATE_S * fs))
    out["st_j_uv"] = {lead: round(float(med[i, qrs_off] - base[i]) * 1000) for i, lead in enumerate(LEADS)}
    out["st_j60_uv"] = {lead: round(float(med[i, j60] - base[i]) * 1000) for i, lead in enumerate(LEADS)}

    for lead in LEADS:
        per_lead[lead]["qrs_on"], per_lead[lead]["qrs_off"] = qrs_on, qrs_off
    out["reasons"] = reasons
    out["version"] = VERSION
    out["fs"] = fs
    out["median_beats"] = {"start_s": None, "r": r, "leads": {lead: [round(float(v), 4) for v in med[i]]
                                                               for i, lead in enumerate(LEADS)}}
    out["fiducials"] = {"p_on": p_on, "p_off": p_off, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_off": t_off,
                        "j60": j60, "per_lead": per_lead}
    out["beats"] = {"qrs": [int(p) for p in peaks], "dominant": [int(p) for p in dominant]}
    return out
