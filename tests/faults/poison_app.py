"""The app's Celery worker with booby-trapped model code, for the poisoned-input fault test.

An ECG whose first lead-I sample is CRASH_MV kills the worker process outright (as a segfault or the
out-of-memory killer would); one at RAISE_MV makes the model code raise. Everything else is the real app.
"""
from __future__ import annotations

import os
import signal

import numpy as np

from ecgapp.celery import app  # noqa: F401  (celery -A tests.faults.poison_app finds it here)
from mlcore import ensemble

CRASH_MV = 7.777
RAISE_MV = 6.666
_predict = ensemble.Ensemble.predict


def _poisoned_predict(self, signals, fs, leads=None):
    first = float(np.asarray(signals[0])[0, 0])
    if abs(first - CRASH_MV) < 1e-3:
        os.kill(os.getpid(), signal.SIGKILL)
    if abs(first - RAISE_MV) < 1e-3:
        raise RuntimeError("poisoned input: the model code failed")
    return _predict(self, signals, fs, leads)


ensemble.Ensemble.predict = _poisoned_predict
