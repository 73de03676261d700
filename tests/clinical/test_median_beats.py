"""The result page's median beats (clinical.measurements.median_beats_view, clinical.ecgplot.median_beats_figure): the
beat of each lead, the marks where the intervals were measured, and a sentence instead when there is nothing to draw;
the calipers' lead boxes of both sheets."""
from __future__ import annotations

import json

import numpy as np
import pytest
from django.urls import reverse

from clinical import demo, services
from clinical.ecgplot import FIDUCIAL_MARKS, GRID_3X4, ecg_paper_figure
from clinical.measurements import NOT_MEASURED_YET, ecg_measurements, median_beats_view
from clinical.models import EcgRecord
from mlcore import measure as mlmeasure
from mlcore.preprocess import LEADS

FS = 500
MAX_PAYLOAD_BYTES = 45_000


@pytest.fixture(scope="module")
def sinus() -> dict:
    """The stored measurements of a clean 68/min sinus rhythm at 500 Hz (median beats kept at 250 Hz)."""
    return ecg_measurements(demo.synthesize(demo.CASES[0], fs=FS, seed=1), FS)


def traces_by_meta(plot: dict) -> dict[str, dict]:
    return {t["meta"]: t for t in plot["figure"]["data"]}


def column_pitch(plot: dict) -> float:
    panels = {p["lead"]: p for p in plot["calipers"]["panels"]}
    return panels["aVR"]["x0"] - panels["I"]["x0"]


def test_every_lead_has_its_median_beat_in_the_3x4_layout(sinus):
    plot = median_beats_view(sinus)["plot"]
    traces = traces_by_meta(plot)
    assert set(LEADS) <= set(traces)
    pitch = column_pitch(plot)
    for row, leads in enumerate(GRID_3X4):
        for col, lead in enumerate(leads):
            t = traces[lead]
            assert t["x0"] == pytest.approx(col * pitch)
            assert t["dx"] == pytest.approx(1 / sinus["median_beats"]["fs"])
            j0 = round(plot["start_s"] * sinus["median_beats"]["fs"])
            stored = np.asarray(sinus["median_beats"]["leads"][lead])[j0:j0 + len(t["y"])]
            # Drawn 3 mV lower per row, the voltage otherwise as stored (to the 10 µV the page draws).
            assert np.allclose(np.asarray(t["y"]) + 3.0 * row, stored, atol=0.006)
    assert len(json.dumps(median_beats_view(sinus))) <= MAX_PAYLOAD_BYTES


def test_the_marks_fall_where_the_fiducials_are_on_the_drawn_beat(sinus):
    plot = median_beats_view(sinus)["plot"]
    traces, fid, pitch = traces_by_meta(plot), sinus["fiducials"], column_pitch(plot)
    assert [m["key"] for m in plot["marks"]] == [m.key for m in FIDUCIAL_MARKS]
    for key in ("p_on", "p_off", "qrs_on", "qrs_off", "j60", "t_off"):
        xs = [x for x in traces[key]["x"] if x is not None]
        # One vertical line per column, at the fiducial's time from the beat's start (the record's own rate).
        assert xs == pytest.approx([c * pitch + fid[key] / FS - plot["start_s"] for c in range(4) for _ in (0, 1)],
                                   abs=1e-4)
    # Drawn from a little before P onset to a little after T end, not the whole stored 1.3 s.
    box = plot["calipers"]["panels"][0]
    assert 0.1 <= fid["p_on"] / FS - plot["start_s"] <= 0.13
    assert 0.15 <= box["x1"] - (fid["t_off"] / FS - plot["start_s"]) <= 0.17
    assert box["x1"] - box["x0"] < 1.0
    # The drawn beat and the marks share one time axis: lead II's R peak (the alignment point) sits between the
    # QRS marks.
    ii = traces["II"]
    peak_x = ii["x0"] + int(np.nanargmax(np.asarray(ii["y"], dtype=float))) * ii["dx"]
    assert fid["qrs_on"] / FS < peak_x + plot["start_s"] < fid["qrs_off"] / FS
    notes = [a["text"] for a in plot["figure"]["layout"]["annotations"]]
    for name, key in (("PR", "pr_ms"), ("QRS", "qrs_ms"), ("QT", "qt_ms")):
        assert notes.count(f"<b>{name} {sinus[key]} ms</b>") == 4  # one bar per column
    assert median_beats_view(sinus)["missing"] == []


def test_no_p_wave_leaves_out_its_marks_and_the_pr_bar_and_says_why(sinus):
    fid = {**sinus["fiducials"], "p_on": None, "p_off": None}
    m = {**sinus, "fiducials": fid, "pr_ms": None,
         "reasons": {**sinus["reasons"], "pr_ms": "no consistent P wave (irregular rhythm)"}}
    view = median_beats_view(m)
    metas = set(traces_by_meta(view["plot"]))
    assert "p_on" not in metas and "p_off" not in metas and "bar-pr" not in metas
    assert {"qrs_on", "qrs_off", "t_off", "bar-qrs", "bar-qt"} <= metas
    assert view["missing"] == [{"label": "P wave", "reason": "no consistent P wave (irregular rhythm)"}]
    assert not any("PR" in a["text"] for a in view["plot"]["figure"]["layout"]["annotations"])


def test_no_t_end_leaves_out_the_qt_bar(sinus):
    m = {**sinus, "fiducials": {**sinus["fiducials"], "t_off": None}, "qt_ms": None}
    view = median_beats_view(m)
    metas = set(traces_by_meta(view["plot"]))
    assert "t_off" not in metas and "bar-qt" not in metas and "bar-pr" in metas
    assert view["missing"][0]["label"] == "T end"


@pytest.mark.parametrize("stored", [None, {}])
def test_an_ecg_stored_before_measurements_gets_a_sentence_not_a_plot(stored):
    assert median_beats_view(stored) == {"reason": NOT_MEASURED_YET}


def test_unmeasurable_beats_give_the_stored_reason():
    m = mlmeasure.measure(np.zeros((12, 5000)), FS)  # a flat line: no beats
    assert m["median_beats"] is None
    view = median_beats_view(m)
    assert "plot" not in view and "beats found" in view["reason"]


def test_median_beats_that_cannot_be_drawn_give_a_sentence_not_an_error(sinus):
    view = median_beats_view({**sinus, "median_beats": {"r": 0, "leads": {"I": [0.1]}}})
    assert view == {"reason": "the median beats stored for this ECG could not be drawn"}


def test_an_older_record_without_the_decimation_step_is_drawn_at_the_records_rate(sinus):
    beats = {"r": 250, "leads": {lead: [0.0] * 650 for lead in LEADS}}  # stored at 500 Hz, no "fs"/"step"
    plot = median_beats_view({**sinus, "median_beats": beats})["plot"]
    assert traces_by_meta(plot)["I"]["dx"] == pytest.approx(1 / FS)


def test_caliper_boxes_cover_each_lead_of_both_sheets(sinus):
    sheet = ecg_paper_figure(demo.synthesize(demo.CASES[0], fs=FS, seed=1), FS)["calipers"]
    assert sheet["shared_time"] and sheet["mm_per_s"] == 25 and sheet["mm_per_mv"] == 10
    assert [p["lead"] for p in sheet["panels"]] == [lead for row in GRID_3X4 for lead in row] + ["II"]
    rhythm = sheet["panels"][-1]
    assert (rhythm["x0"], rhythm["x1"], rhythm["y0"], rhythm["y1"]) == (0.0, 10.0, -10.5, -7.5)
    median = median_beats_view(sinus)["plot"]["calipers"]
    # Across two median beats x is not time: the page refuses to read an interval there.
    assert not median["shared_time"] and median["mm_per_s"] == 50 and len(median["panels"]) == 12
    boxes = [(p["x0"], p["x1"], p["y0"], p["y1"]) for p in median["panels"]]
    assert all(a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
               for i, a in enumerate(boxes) for b in boxes[i + 1:])  # no two boxes overlap


def test_result_page_carries_the_median_beats_or_says_why_not(client, clinician):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-MB", age=46, sex="F", fs=None,
                                 files={"json": ("ecg.json", demo.as_json(demo.synthesize(demo.CASES[0], fs=FS,
                                                                                            seed=1), FS))})
    client.force_login(clinician)
    url = reverse("clinical:ecg-detail", args=[record.public_id])
    html = client.get(url).content.decode()
    payload = json.loads(html.split('id="median-plot-data" type="application/json">')[1].split("</script>")[0])
    assert {m["key"] for m in payload["marks"]} == {m.key for m in FIDUCIAL_MARKS}
    assert 'id="median-calipers"' in html and 'id="ecg-calipers"' in html and "QRS offset (J)" in html
    assert 'id="median-beats-absent"' not in html

    EcgRecord.objects.filter(pk=record.pk).update(measurements={})
    html = client.get(url).content.decode()
    assert "median-plot-data" not in html and 'id="median-calipers"' not in html
    assert f"No median beats for this ECG: {NOT_MEASURED_YET}." in html
