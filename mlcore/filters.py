"""Butterworth filter designs, cached: every upload is filtered several times at one of a few sampling rates."""
from __future__ import annotations

import functools

import numpy as np
from scipy.signal import butter


def butter_sos(order: int, cutoff: float | tuple[float, float], *, fs: float, btype: str = "low") -> np.ndarray:
    """``scipy.signal.butter(order, cutoff, btype, fs=fs, output="sos")``, designed once per arguments.

    A copy of the cached design is returned: scipy's filters want a writable array, and no caller may change the
    cache's. Designing took about a sixth of an upload's quality, feature and measurement time."""
    key = tuple(float(c) for c in cutoff) if isinstance(cutoff, (tuple, list)) else float(cutoff)
    return _design(int(order), key, btype, float(fs)).copy()


@functools.lru_cache(maxsize=128)
def _design(order: int, cutoff: float | tuple[float, ...], btype: str, fs: float) -> np.ndarray:
    return butter(order, cutoff, btype=btype, fs=fs, output="sos")
