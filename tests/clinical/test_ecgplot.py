"""The ECG paper figure: what a clinician reading the printout-like plot would check."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from plotly.offline import get_plotlyjs_version

from clinical.ecgplot import GRID_3X4, Overlay, ecg_paper_figure, median_beats_figure, overview_figure, plotly_js_path
from mlcore.preprocess import LEADS
from tests.conftest import synthetic_ecg

ROW_OF = {lead: row for row, leads in enumerate(GRID_3X4) for lead in leads}
COL_OF = {lead: col for leads in GRID_3X4 for col, lead in enumerate(leads)}


def ecg_traces(fig: dict) -> dict[str, dict]:
    """The 12 lead segments by lead name, plus the rhythm strip under 'rhythm'."""
    data = fig["data"]
    segments = {t["name"]: t for t in data[:12]}
    assert list(segments) == list(LEADS)
    return {**segments, "rhythm": data[12]}


def baseline_of(trace: dict) -> float:
    """The row offset: drawn y minus the recorded voltage shown in the hover."""
    offsets = np.asarray(trace["y"]) - np.asarray(trace["customdata"])
    assert np.ptp(offsets) < 2e-3
    return round(float(offsets.mean()), 2)


def mi_overlay(maps: np.ndarray, label: str = "MI") -> Overlay:
    rel = maps.sum(axis=1) + 1e-9
    return Overlay(label=label, display="Myocardial infarction", lead_maps=maps, lead_relevance=rel / rel.sum())


@pytest.fixture
def ecg_500hz() -> np.ndarray:
    return synthetic_ecg(np.random.default_rng(7), fs=500, seconds=10, hr=75)


def test_grid_has_1_mm_and_5_mm_boxes(ecg_500hz):
    layout = ecg_paper_figure(ecg_500hz, 500)["figure"]["layout"]
    x, y = layout["xaxis"], layout["yaxis"]
    assert (x["dtick"], x["minor"]["dtick"]) == pytest.approx((0.2, 0.04))
    assert (y["dtick"], y["minor"]["dtick"]) == pytest.approx((0.5, 0.1))
    assert x["showgrid"] and x["minor"]["showgrid"] and y["showgrid"] and y["minor"]["showgrid"]
    # Major lines run through every row's baseline, as on paper.
    assert x["tick0"] == 0 and y["tick0"] == 0


def test_small_box_is_square_on_screen(ecg_500hz):
    layout = ecg_paper_figure(ecg_500hz, 500)["figure"]["layout"]
    y = layout["yaxis"]
    assert y["scaleanchor"] == "x"
    # Plotly: pixels per y unit = scaleratio * pixels per x unit. 0.04 s and 0.1 mV must both be 1 mm.
    px_per_s = 1.0
    assert 0.1 * y["scaleratio"] * px_per_s == pytest.approx(0.04 * px_per_s)
    # The figure's height fits the ranges at that ratio, so plotly need not shrink either axis.
    m = layout["margin"]
    px_per_s = (layout["width"] - m["l"] - m["r"]) / np.ptp(layout["xaxis"]["range"])
    px_per_mv = (layout["height"] - m["t"] - m["b"]) / np.ptp(y["range"])
    assert px_per_mv == pytest.approx(y["scaleratio"] * px_per_s, rel=0.01)


def test_standard_3x4_layout_with_lead_ii_rhythm_strip(ecg_500hz):
    traces = ecg_traces(ecg_paper_figure(ecg_500hz, 500)["figure"])
    for lead in LEADS:
        xs = traces[lead]["x"]
        col = COL_OF[lead]
        assert xs[0] == pytest.approx(2.5 * col), lead
        assert 2.5 * col + 2.49 < xs[-1] < 2.5 * col + 2.5, lead
        assert baseline_of(traces[lead]) == -3.0 * ROW_OF[lead], lead
    # Spot checks in the clinician's words: aVR is the second column of row 1, V6 the last of row 3.
    assert (traces["aVR"]["x"][0], baseline_of(traces["aVR"])) == (2.5, 0.0)
    assert (traces["V6"]["x"][0], baseline_of(traces["V6"])) == (7.5, -6.0)
    rhythm = traces["rhythm"]
    assert rhythm["name"] == "II" and baseline_of(rhythm) == -9.0
    assert rhythm["x"][0] == 0.0 and rhythm["x"][-1] == pytest.approx(10 - 1 / 500)


def test_traces_keep_the_original_sampling_rate(ecg_500hz):
    traces = ecg_traces(ecg_paper_figure(ecg_500hz, 500)["figure"])
    assert len(traces["rhythm"]["x"]) == 5000
    assert all(len(traces[lead]["x"]) == 1250 for lead in LEADS)
    assert np.diff(traces["V2"]["x"]) == pytest.approx(0.002)
    # The hover shows the recorded voltage, not a resampled or shifted one.
    np.testing.assert_allclose(traces["V2"]["customdata"], ecg_500hz[LEADS.index("V2"), 2500:3750], atol=5e-4)
    np.testing.assert_allclose(traces["rhythm"]["customdata"], ecg_500hz[LEADS.index("II")], atol=5e-4)


def test_a_1_mv_calibration_pulse_starts_every_row(ecg_500hz):
    data = ecg_paper_figure(ecg_500hz, 500)["figure"]["data"]
    (cal,) = [t for t in data if t.get("meta") == "calibration"]
    pulses, xs, ys = [], [], []
    for x, y in zip([*cal["x"], None], [*cal["y"], None]):
        if x is None:
            pulses.append((np.array(xs), np.array(ys)))
            xs, ys = [], []
        else:
            xs.append(x)
            ys.append(y)
    assert len(pulses) == 4
    for row, (px, py) in enumerate(pulses):
        base = -3.0 * row
        assert py.min() == base and py.max() - py.min() == pytest.approx(1.0, abs=1e-12)
        top = px[py == py.max()]
        assert top.max() - top.min() == pytest.approx(0.2)
        assert px.max() <= 0.0  # in the margin, before the first sample


def test_every_lead_is_labelled_at_its_segment(ecg_500hz):
    annotations = ecg_paper_figure(ecg_500hz, 500)["figure"]["layout"]["annotations"]
    labels = sorted(a["text"] for a in annotations)
    assert labels == sorted([*LEADS, "II"])
    for a in annotations:
        if a["y"] < -9.0 + 1.5:  # the rhythm strip's row
            assert a["text"] == "II" and a["x"] < 0.2
            continue
        lead = a["text"]
        assert 2.5 * COL_OF[lead] <= a["x"] < 2.5 * COL_OF[lead] + 0.2, lead
        assert -3.0 * ROW_OF[lead] < a["y"] < -3.0 * ROW_OF[lead] + 1.5, lead


def test_overlays_start_hidden_and_their_traces_are_returned(ecg_500hz):
    rng = np.random.default_rng(0)
    result = ecg_paper_figure(
        ecg_500hz, 500,
        overlays={"MI": mi_overlay(rng.uniform(size=(12, 1000))), "AFIB": mi_overlay(rng.uniform(size=(12, 1000)))},
    )
    data = result["figure"]["data"]
    mi, afib = result["overlay_traces"]["MI"], result["overlay_traces"]["AFIB"]
    assert len(mi) == len(afib) == 13 and not set(mi) & set(afib)
    for label, indices in result["overlay_traces"].items():
        for i in indices:
            assert data[i]["visible"] is False
            assert data[i]["meta"] == data[i]["legendgroup"] == label
    # The ECG itself stays visible.
    assert all(t.get("visible", True) is not False for t in data[:14])


def test_evidence_is_shaded_only_where_the_map_is_high(ecg_500hz):
    maps = np.zeros((12, 1000))
    maps[LEADS.index("V2"), 550:600] = 0.9  # 5.5-6.0 s, inside V2's column (5.0-7.5 s)
    maps[LEADS.index("V2"), 600:700] = 0.1  # weak evidence, left out
    result = ecg_paper_figure(ecg_500hz, 500, overlays={"MI": mi_overlay(maps)})
    data = result["figure"]["data"]
    bands = {data[i]["name"].split(" · ")[1].split(" ")[0]: data[i] for i in result["overlay_traces"]["MI"][:12]}
    v2 = bands["V2"]
    cells = np.array(v2["z"][0], dtype=float)  # None -> nan
    times = v2["x0"] + v2["dx"] * np.arange(len(cells))
    assert times[0] == pytest.approx(5.0) and len(cells) == 250
    shaded = times[~np.isnan(cells)]
    assert shaded.min() == pytest.approx(5.5) and shaded.max() == pytest.approx(5.99)
    assert v2["y0"] == -3.0  # behind V2's row
    for lead, band in bands.items():
        if lead != "V2":
            assert all(v is None for v in band["z"][0]), lead


def test_lead_relevance_is_listed_largest_first(ecg_500hz):
    rel = np.array([1, 2, 0, 0, 0, 0, 5, 31, 20, 10, 1, 30], dtype=float) / 100
    ov = Overlay("MI", "Myocardial infarction", np.zeros((12, 1000)), rel)
    listed = ecg_paper_figure(ecg_500hz, 500, overlays={"MI": ov})["overlay_lead_relevance"]["MI"]
    assert [d["lead"] for d in listed[:4]] == ["V2", "V6", "V3", "V4"]
    assert listed[0]["share"] == pytest.approx(0.31)
    shares = [d["share"] for d in listed]
    assert shares == sorted(shares, reverse=True) and sorted(d["lead"] for d in listed) == sorted(LEADS)


def test_long_record_shows_the_window_the_model_saw():
    fs, n = 500, 30 * 500
    sig = np.tile(np.arange(n) / fs, (12, 1))  # each sample's value is its time in the record
    maps = np.zeros((12, 1000))
    maps[LEADS.index("II"), 100:150] = 1.0  # 1.0-1.5 s into the model's window
    result = ecg_paper_figure(sig, fs, overlays={"MI": mi_overlay(maps)})
    data = result["figure"]["data"]
    rhythm = data[12]
    assert len(rhythm["x"]) == 5000 and rhythm["customdata"][0] == pytest.approx(10.0)  # central 10 s of 30
    band = data[result["overlay_traces"]["MI"][12]]
    first = next(i for i, v in enumerate(band["z"][0]) if v is not None)
    assert band["x0"] + band["dx"] * first == pytest.approx(1.0)


def test_short_record_evidence_lines_up_with_the_padded_model_window():
    fs = 250
    sig = synthetic_ecg(np.random.default_rng(1), fs=fs, seconds=8)
    maps = np.zeros((12, 1000))
    maps[LEADS.index("II"), 150:160] = 1.0  # the model padded 1 s before the record: 1.5 s -> 0.5 s drawn
    result = ecg_paper_figure(sig, fs, overlays={"MI": mi_overlay(maps)})
    data = result["figure"]["data"]
    assert data[12]["x"][-1] == pytest.approx(8 - 1 / fs)
    band = data[result["overlay_traces"]["MI"][12]]
    first = next(i for i, v in enumerate(band["z"][0]) if v is not None)
    assert band["x0"] + band["dx"] * first == pytest.approx(0.5)


@pytest.mark.parametrize(("fs", "limit_bytes"), [(500, 1_500_000), (1000, 3_000_000)])
def test_figure_json_stays_small(fs, limit_bytes):
    sig = synthetic_ecg(np.random.default_rng(2), fs=fs)
    overlay = mi_overlay(np.random.default_rng(3).uniform(size=(12, 1000)))
    size = len(json.dumps(ecg_paper_figure(sig, fs, overlays={"MI": overlay}, title="Test")))
    assert size < limit_bytes


def test_a_dropout_is_drawn_as_a_gap_and_the_json_stays_valid(ecg_500hz):
    sig = ecg_500hz.copy()
    sig[LEADS.index("II"), 100:200] = np.nan  # a lead-off stretch in the first column
    text = json.dumps(ecg_paper_figure(sig, 500), allow_nan=False)
    rhythm = json.loads(text)["figure"]["data"][12]
    assert rhythm["y"][100:200] == [None] * 100 and None not in rhythm["y"][200:]


def test_rejects_a_signal_that_is_not_12_leads():
    with pytest.raises(ValueError, match="12"):
        ecg_paper_figure(np.zeros((8, 5000)), 500)


def test_plotly_js_is_served_from_the_installed_package():
    path = plotly_js_path()
    with open(path, encoding="utf-8") as f:
        header = f.read(200)
    assert f"plotly.js v{get_plotlyjs_version()}" in header


def test_module_does_not_need_django():
    code = "import sys, clinical.ecgplot; assert not any(m.startswith('django') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_figures_built_as_dicts_are_what_plotly_itself_validates_them_to():
    """ecgplot builds traces as plain dicts (plotly's per-element validation was most of a result page's time):
    each figure must come out of plotly's own validation unchanged, overlays, median beats and overview included."""
    import plotly.graph_objects as go

    from clinical.measurements import ecg_measurements

    rng = np.random.default_rng(3)
    x = synthetic_ecg(rng, fs=500)
    overlays = {"superclass:MI": Overlay(label="MI", display="Myocardial infarction",
                                         lead_maps=rng.random((12, 1000)), lead_relevance=rng.random(12))}
    m = ecg_measurements(x, 500)
    figures = [ecg_paper_figure(x, 500, overlays=overlays)["figure"],
               ecg_paper_figure(x[:, :3000], 500)["figure"],
               overview_figure(np.concatenate([x] * 4, axis=1), 500, start_s=10, end_s=20)["figure"],
               median_beats_figure(m["median_beats"]["leads"], beats_fs=m["median_beats"]["fs"], fs=500,
                                   fiducials=m["fiducials"], intervals_ms={"pr": m["pr_ms"], "qrs": m["qrs_ms"],
                                                                           "qt": m["qt_ms"]})["figure"]]
    for fig in figures:
        ours = json.loads(json.dumps(fig, sort_keys=True))
        assert json.loads(json.dumps(go.Figure(fig).to_plotly_json(), sort_keys=True)) == ours
        assert all(t["type"] in ("scatter", "heatmap") for t in fig["data"])
