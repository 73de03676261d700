"""How an ECG's signal and its evidence maps are stored: compact, and lossless where it must be (issue 17).

Signal. An upload's samples are integer codes of its device at a resolution (WFDB: ADC units at a gain; MUSE:
4.88 µV steps; ...), which the intake turns into float32 millivolts. Stored again as those integer codes (int16),
first-differenced and zlib-compressed, with each lead's gain (codes per mV), the float32 array comes back bit for
bit. A 10 s 500 Hz PTB-XL record: 240 000 bytes as float32, 120 000 as int16, ≈ 69 000 as zlib'd float32, ≈ 52 000
as zlib'd int16 and ≈ 35 000 as this (median of 50, manage.py bench_storage). Codes beyond int16 (a text export
with four decimals of mV) are kept as int32 the same way. A signal that is not such codes (float values, a lead
derived at a fraction of a step) is stored as zlib'd float32: also lossless, just larger.

Evidence. Grad-CAM and per-lead maps are in [0, 1] (mlcore.ensemble.Explanation); stored as uint8 steps of 1/255
(error ≤ 0.002, finer than the two decimals the JSON kept), zlib-compressed; the 12 lead shares stay JSON.

No Django import: the migration and the benchmark use these functions as the models do.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

FLOAT32 = "float32"  # raw (12, n) float32 bytes: rows stored before issue 17
INT16_DELTA_ZLIB = "int16-dz"  # 12 float64 gains, then zlib of the first differences of the int16 codes
# The same for codes beyond int16 (a text export with four decimals of mV: 10 000 codes per mV, ±3.3 mV in int16).
INT32_DELTA_ZLIB = "int32-dz"
FLOAT32_ZLIB = "float32-z"  # zlib of the (12, n) float32 bytes
SIGNAL_ENCODINGS = (FLOAT32, INT16_DELTA_ZLIB, INT32_DELTA_ZLIB, FLOAT32_ZLIB)
_CODES = {INT16_DELTA_ZLIB: "<i2", INT32_DELTA_ZLIB: "<i4"}
N_LEADS = 12
_GAINS = struct.Struct("<12d")
# Codes per mV that exports use (WFDB 1000 or 200; MUSE 4.88 µV; Philips 5 µV; SCP 1 µV...), tried after the gain
# the samples themselves suggest.
COMMON_GAINS = (1000.0, 200.0, 400.0, 500.0, 1 / 0.00488, 2000.0, 100.0, 1 / 0.0025, 1 / 0.00125, 10000.0)
INT32_MAX = 2**31 - 1
ZLIB_LEVEL = 6  # level 9 saves under 2 % more here for several times the time


def _exact(lead: np.ndarray, gain: float) -> bool:
    """Whether ``lead`` (float32 mV) is integer codes at ``gain`` codes per mV, bit for bit (a negative zero
    counting as zero: code 0 decodes to +0.0, the same millivolts)."""
    if not (np.isfinite(gain) and gain >= 1):  # under one code per mV is no device's resolution
        return False
    codes = np.round(lead.astype(np.float64) * gain) + 0.0  # -0.0 codes are the int16 0 that decodes to +0.0
    if np.abs(codes).max(initial=0) > INT32_MAX:
        return False
    return np.array_equal((codes / gain).astype(np.float32).view(np.uint32), (lead + np.float32(0)).view(np.uint32))


def _step_candidates(step: float) -> list[float]:
    return [float(round(1 / step)), round(1 / step, 6), 1 / step] if step > 0 else []


def _gain(lead: np.ndarray) -> float | None:
    """Codes per mV at which ``lead`` (float32 mV) is integer codes exactly, or None.

    First the gain that the smallest change between neighbouring samples suggests: on a recording that is one
    code (or a few) in most steps, that is the resolution, found without sorting the lead (sorting twelve leads
    was a fifth of an upload's storage time). Then the smallest step between any two values, then the gains
    exports use."""
    values = lead.astype(np.float64)
    moves = np.abs(np.diff(values))
    moves = moves[moves > 0]
    if len(moves):
        # float32 millivolts carry a relative error of ~1e-7, so four decimals of mV show steps of 0.99994e-4:
        # 1/step rounded to three significant digits is then the gain (10 000), rounded to units it is not.
        per_mv = 1 / float(moves.min())
        for gain in (float(round(per_mv)), float(f"{per_mv:.3g}")):
            if _exact(lead, gain):
                return gain
    steps = np.diff(np.unique(values))
    candidates = [*(_step_candidates(float(steps.min())) if len(steps) else []), *COMMON_GAINS]
    return next((gain for gain in candidates if _exact(lead, gain)), None)


def signal_encode(signal: np.ndarray) -> tuple[str, bytes]:
    """(encoding, bytes) for a (12, n) float32 mV signal; ``signal_decode`` returns it bit for bit (a negative
    zero as zero)."""
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    gains = [_gain(lead) for lead in signal]
    if all(g is not None for g in gains):
        codes = np.round(signal.astype(np.float64) * np.asarray(gains)[:, None])
        encoding = INT16_DELTA_ZLIB if np.abs(codes).max(initial=0) <= 32767 else INT32_DELTA_ZLIB
        codes = codes.astype(_CODES[encoding])
        # Differences of the codes wrap around in their type and unwrap again in the cumulative sum: still exact.
        delta = np.diff(codes, axis=1, prepend=codes.dtype.type(0))
        return encoding, _GAINS.pack(*gains) + zlib.compress(delta.tobytes(), ZLIB_LEVEL)
    return FLOAT32_ZLIB, zlib.compress(signal.astype("<f4").tobytes(), ZLIB_LEVEL)


def signal_decode(encoding: str, data: bytes, n_samples: int) -> np.ndarray:
    """(12, n) float32 mV from stored bytes."""
    data = bytes(data)
    if encoding == FLOAT32:
        return np.frombuffer(data, dtype="<f4").reshape(N_LEADS, n_samples)
    if encoding == FLOAT32_ZLIB:
        return np.frombuffer(zlib.decompress(data), dtype="<f4").reshape(N_LEADS, n_samples)
    if encoding in _CODES:
        gains = np.asarray(_GAINS.unpack_from(data))
        delta = np.frombuffer(zlib.decompress(data[_GAINS.size:]), dtype=_CODES[encoding]).reshape(N_LEADS, n_samples)
        codes = np.cumsum(delta, axis=1, dtype=delta.dtype)
        return (codes.astype(np.float64) / gains[:, None]).astype(np.float32)
    raise ValueError(f"unknown signal encoding {encoding!r}")


# ---------------------------------------------------------------------------------------------------------------
# Evidence


@dataclass(frozen=True)
class Evidence:
    gradcam: np.ndarray  # (n,) in [0, 1]
    lead_maps: np.ndarray  # (12, n) in [0, 1]
    lead_relevance: np.ndarray  # (12,)


def evidence_encode(maps: dict[str, Evidence]) -> tuple[dict, bytes]:
    """(index, bytes): ``index`` maps each finding key to {"row", "lead_relevance"} (JSON, small), ``bytes`` holds
    every map as uint8 (findings, 13 rows: Grad-CAM then the 12 leads, n), zlib-compressed. b"" for none."""
    if not maps:
        return {}, b""
    stack = np.stack([np.vstack([e.gradcam[None, :], e.lead_maps]) for e in maps.values()])  # (k, 13, n)
    q = np.round(np.clip(stack, 0.0, 1.0) * 255).astype(np.uint8)
    index = {key: {"row": i, "lead_relevance": np.round(np.asarray(e.lead_relevance, dtype=np.float64), 3).tolist()}
             for i, (key, e) in enumerate(maps.items())}
    return index, zlib.compress(q.tobytes(), ZLIB_LEVEL)


def evidence_decode(index: dict, data: bytes, key: str) -> Evidence | None:
    """The evidence for one finding key, or None when the result has none for it."""
    entry = index.get(key)
    if entry is None or not data:
        return None
    q = np.frombuffer(zlib.decompress(bytes(data)), dtype=np.uint8).reshape(len(index), N_LEADS + 1, -1)
    maps = q[entry["row"]].astype(np.float32) / 255
    return Evidence(gradcam=maps[0], lead_maps=maps[1:], lead_relevance=np.asarray(entry["lead_relevance"],
                                                                                   dtype=np.float32))
