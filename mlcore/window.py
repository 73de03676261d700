"""Which 10 s of a longer record the model reads.

The model reads 10 s (mlcore.preprocess.WINDOW_S). A record of 38 s (PTB) or of a few minutes (Holter-like
strips, monitor exports) holds many 10 s windows, and the central one is often not the cleanest: a patient moves,
an electrode is pressed back on. :func:`choose_window` runs the quality gate (:func:`mlcore.quality.assess`, the
same checks an upload passes) on candidate windows and keeps the best: fewest refusals, then fewest warnings,
then least high-frequency noise; windows about equally clean go to the one nearest the record's centre, so a
clean record is read where it always was. :func:`user_window` is the window a person picked instead.
No Django import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlcore.preprocess import WINDOW_S
from mlcore.quality import HF_MIN_FS, QualityReport, assess, hf_noise_ratio

CHOSEN_BY = ("quality", "user")
# Two windows whose noise measures (mean over leads of HF / ECG power, see hf_noise_ratio) differ by less than this
# are equally clean: a fifth of the ratio at which one lead is warned about (HF_WARN_RATIO = 0.25). Without a
# tolerance a clean record would be read wherever the random noise happens to be a hair lower.
NOISE_TIE = 0.05
# Each candidate costs one assess() (about 6 ms for 12 leads x 10 s at 500 Hz on one core). Up to this many
# candidates are all assessed; beyond it (records over about a minute at a 1 s step) an evenly spaced subset is,
# then every step around the best of them, so a 300 s record costs about 60 assessments instead of 291.
MAX_ASSESSED = 48
NOISE_CAP = 2.0  # per-lead ratio counted up to this: one dead-noisy lead must not outweigh eleven clean ones


class WindowError(ValueError):
    """A window that cannot be read from this record; the message is shown to users."""


@dataclass(frozen=True)
class CandidateScore:
    start_s: float
    refusals: int
    warnings: int
    noise: float  # mean over leads of min(HF / ECG power, NOISE_CAP); 0 below HF_MIN_FS

    def key(self) -> tuple[int, int]:
        return (self.refusals, self.warnings)

    def to_list(self) -> list:
        return [self.start_s, self.refusals, self.warnings, round(self.noise, 4)]


@dataclass(frozen=True)
class WindowChoice:
    """The analysed window: [start_s, end_s) of a record_s long record, its quality report and how it was chosen.

    candidates: the windows assessed, by start (for display); one, the window itself, when a person chose it or
    the record is no longer than a window.
    """

    start_s: float
    end_s: float
    record_s: float
    chosen_by: str  # "quality" | "user"
    quality: QualityReport
    candidates: tuple[CandidateScore, ...]

    def to_dict(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s, "record_s": self.record_s,
                "chosen_by": self.chosen_by, "candidates": [c.to_list() for c in self.candidates]}


def crop(signal: np.ndarray, fs: float, start_s: float, seconds: float = WINDOW_S) -> np.ndarray:
    """The samples of [start_s, start_s + seconds) of a (12, n) record; the whole record if it is no longer.

    The one place a window is cut: inference, explanation, the quality report and the drawing all read this.
    """
    n = signal.shape[-1]
    length = int(round(seconds * fs))
    if n <= length:
        return signal
    first = min(max(int(round(start_s * fs)), 0), n - length)
    return signal[..., first:first + length]


def _score(signal: np.ndarray, fs: float, start_s: float, seconds: float) -> tuple[CandidateScore, QualityReport]:
    x = crop(signal, fs, start_s, seconds)
    report = assess(x, fs)
    noise = 0.0
    if fs >= HF_MIN_FS:
        ratio = report.hf_ratio if report.hf_ratio is not None else hf_noise_ratio(np.asarray(x, np.float64), fs)[0]
        noise = float(np.mean(np.minimum(ratio, NOISE_CAP)))
    return CandidateScore(start_s, len(report.refusals()), len(report.warnings()), noise), report


def _round_s(value: float) -> float:
    return round(float(value), 3)


def _best(scores: dict[float, CandidateScore], centre: float) -> float:
    """Fewest refusals, then warnings; within NOISE_TIE of the least noise, nearest the centre (earlier on a tie)."""
    fewest = min(s.key() for s in scores.values())
    tied = [s for s in scores.values() if s.key() == fewest]
    least = min(s.noise for s in tied)
    clean = [s for s in tied if s.noise <= least + NOISE_TIE]
    return min(clean, key=lambda s: (abs(s.start_s - centre), s.start_s)).start_s


def choose_window(signal: np.ndarray, fs: float, seconds: float = WINDOW_S, step_s: float = 1.0) -> WindowChoice:
    """The cleanest ``seconds`` of a (12, n) mV record sampled at fs Hz, judged by mlcore.quality.assess.

    Candidates start every ``step_s`` seconds from 0, plus the centred and the last window. A record no longer
    than ``seconds`` is its own single window.
    """
    x = np.asarray(signal)
    record_s = x.shape[-1] / fs
    if record_s <= seconds:
        score, report = _score(x, fs, 0.0, seconds)
        return WindowChoice(0.0, _round_s(record_s), _round_s(record_s), "quality", report, (score,))
    last = record_s - seconds
    centre = _round_s(last / 2)
    grid = [_round_s(k * step_s) for k in range(int(math.floor(last / step_s + 1e-9)) + 1)]
    starts = sorted({*grid, centre, _round_s(last)})
    scores: dict[float, CandidateScore] = {}
    reports: dict[float, QualityReport] = {}

    def run(candidates) -> None:
        for s in candidates:
            if s not in scores:
                scores[s], reports[s] = _score(x, fs, s, seconds)

    if len(starts) <= MAX_ASSESSED:
        run(starts)
    else:
        stride = math.ceil(len(starts) / MAX_ASSESSED)
        run([*starts[::stride], centre, starts[-1]])
        near = _best(scores, centre)
        # Every step between the best coarse window and its coarse neighbours.
        run([s for s in starts if abs(s - near) < stride * step_s])
    start = _best(scores, centre)
    return WindowChoice(start, _round_s(min(start + seconds, record_s)), _round_s(record_s), "quality",
                        reports[start], tuple(scores[s] for s in sorted(scores)))


def user_window(signal: np.ndarray, fs: float, start_s: float, seconds: float = WINDOW_S) -> WindowChoice:
    """The window starting at ``start_s`` that a person picked; WindowError if the record has no such window."""
    x = np.asarray(signal)
    record_s = x.shape[-1] / fs
    latest = max(record_s - seconds, 0.0)
    if isinstance(start_s, bool) or not isinstance(start_s, int | float) or not math.isfinite(start_s):
        raise WindowError(f"Give the start of the window as a number of seconds from 0 to {_floor1(latest):g}.")
    if start_s < 0 or start_s > latest + 1e-6:
        if record_s <= seconds:
            raise WindowError(f"This recording is {record_s:.1f} s long: the whole of it is analysed, so the "
                              "window can only start at 0 s.")
        raise WindowError(f"A {seconds:g} s window of this {record_s:.1f} s recording starts between 0 and "
                          f"{_floor1(latest):g} s; {start_s:g} s is outside that.")
    start = _round_s(min(float(start_s), latest))
    score, report = _score(x, fs, start, seconds)
    return WindowChoice(start, _round_s(min(start + seconds, record_s)), _round_s(record_s), "user", report,
                        (score,))


def _floor1(value: float) -> float:
    """Rounded down to 0.1 s, so the bound said in a message is one that is accepted."""
    return math.floor(value * 10 + 1e-6) / 10
