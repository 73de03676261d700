"""Which 10 s of a long record the model reads: the cleanest by the quality gate, or the one a person picked."""
from __future__ import annotations

import numpy as np
import pytest

from clinical.demo import CASES, synthesize
from mlcore.window import MAX_ASSESSED, WindowError, choose_window, crop, user_window

FS = 500


def _record(seconds: float, seed: int = 1) -> np.ndarray:
    return synthesize(CASES[0], fs=FS, seconds=seconds, seed=seed)


def _noisy(x: np.ndarray, start_s: float, stop_s: float, mv: float = 0.5) -> np.ndarray:
    """Muscle-tremor-like noise on every lead between start_s and stop_s."""
    x = x.copy()
    rng = np.random.default_rng(7)
    a, b = int(start_s * FS), int(stop_s * FS)
    x[:, a:b] += rng.normal(0, mv, (12, b - a)).astype(np.float32)
    return x


def test_a_noisy_middle_is_avoided():
    # 40 s with heavy noise from 12 to 30 s: the central window (15-25 s) is all noise; 0-12 s is clean.
    choice = choose_window(_noisy(_record(40), 12, 30), FS)
    assert choice.chosen_by == "quality"
    assert choice.end_s <= 12 or choice.start_s >= 30
    assert choice.quality.usable and not choice.quality.issues
    assert (choice.start_s, choice.end_s, choice.record_s) == (2.0, 12.0, 40.0)  # the clean one nearest the centre
    centre = next(c for c in choice.candidates if c.start_s == 15.0)
    assert centre.refusals > 0  # the window read before this change would have refused the whole record


def test_a_clean_record_is_read_in_its_centre():
    choice = choose_window(_record(40), FS)
    assert (choice.start_s, choice.end_s) == (15.0, 25.0)
    assert choice.quality.usable


def test_a_record_no_longer_than_the_window_is_its_own_window():
    choice = choose_window(_record(8.5), FS)
    assert (choice.start_s, choice.end_s, choice.record_s) == (0.0, 8.5, 8.5)
    assert len(choice.candidates) == 1
    assert crop(_record(8.5), FS, choice.start_s).shape == (12, int(8.5 * FS))


def test_a_long_record_is_searched_coarse_then_fine():
    # 300 s: more candidates than MAX_ASSESSED, so an evenly spaced subset first, then every second near the best.
    x = _noisy(_record(300), 0, 200)
    choice = choose_window(x, FS)
    assert choice.start_s >= 200 and choice.quality.usable
    assert len(choice.candidates) < 2 * MAX_ASSESSED


def test_the_chosen_window_is_the_samples_cropped():
    x = _record(40)
    w = crop(x, FS, 12.0)
    assert w.shape == (12, 10 * FS)
    np.testing.assert_array_equal(w, x[:, 12 * FS:22 * FS])


def test_a_user_window_is_checked_and_assessed():
    x = _noisy(_record(40), 12, 30)
    choice = user_window(x, FS, 20)
    assert (choice.start_s, choice.end_s, choice.chosen_by) == (20.0, 30.0, "user")
    assert not choice.quality.usable  # the person sees why that window cannot be read
    assert choice.to_dict()["candidates"] == [[20.0, choice.candidates[0].refusals, choice.candidates[0].warnings,
                                               round(choice.candidates[0].noise, 4)]]


@pytest.mark.parametrize("start, said", [
    (-1, "between 0 and 30 s; -1 s is outside"),
    (30.5, "between 0 and 30 s; 30.5 s is outside"),
    (float("nan"), "as a number of seconds from 0 to 30"),
    ("20", "as a number of seconds from 0 to 30"),
])
def test_a_user_window_outside_the_record_is_refused(start, said):
    with pytest.raises(WindowError, match=said):
        user_window(_record(40), FS, start)


def test_a_short_record_only_has_the_window_at_zero():
    with pytest.raises(WindowError, match="only start at 0 s"):
        user_window(_record(9), FS, 1)
    assert user_window(_record(9), FS, 0).start_s == 0.0
