"""Records longer than 10 s: the analysed window is chosen by signal quality, stored, shown, returned by the API,
and a person can have another 10 s analysed as a new ECG (the first result stays as it was)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from clinical import demo, services
from clinical.errors import ApplicationError
from clinical.intake import MAX_SECONDS, MAX_UPLOAD_BYTES
from clinical.models import AuditEvent, EcgRecord
from clinical.tokens import api_token_create
from tests.clinical.conftest import make_result

FS = 500


def long_ecg(seconds: float = 40, noisy: tuple[float, float] | None = None) -> np.ndarray:
    """(12, n) mV; with ``noisy`` = (from_s, to_s), heavy muscle-like noise on every lead in that stretch."""
    x = demo.synthesize(demo.CASES[0], fs=FS, seconds=seconds, seed=3)
    if noisy:
        a, b = int(noisy[0] * FS), int(noisy[1] * FS)
        x[:, a:b] += np.random.default_rng(5).normal(0, 0.5, (12, b - a)).astype(np.float32)
    return x


def upload(user, signal: np.ndarray, fs: float = FS, **kwargs) -> EcgRecord:
    files = {"json": ("long.json", demo.as_json(signal, fs))}
    return services.ecg_submit(actor=user, pseudonym="PT-LONG", age=58, sex="M", files=files, fs=None, **kwargs)


# --- intake -----------------------------------------------------------------------------------------------------

def test_a_long_upload_with_a_noisy_middle_is_analysed_in_its_cleanest_10_s(clinician):
    # Before windows were chosen, the whole record was judged: 18 s of heavy noise refused it.
    record = upload(clinician, long_ecg(40, noisy=(12, 30)))
    assert (record.window_start_s, record.window_end_s, record.window_chosen_by) == (2.0, 12.0, "quality")
    assert record.n_samples == 40 * FS  # the whole record is kept
    assert record.quality["usable"] and record.quality["issues"] == []
    window = record.quality["window"]  # the quality report says which window it judged
    assert (window["start_s"], window["end_s"], window["record_s"], window["chosen_by"]) == (2.0, 12.0, 40.0,
                                                                                            "quality")
    assert len(window["candidates"]) == 31
    assert record.features["noise"] < 0.1  # intake features of the clean window, not of the noise
    event = AuditEvent.objects.get(action="ecg.upload", object_id=str(record.public_id))
    assert event.details["window"] == {"start_s": 2.0, "end_s": 12.0, "chosen_by": "quality"}


def test_a_record_with_no_clean_10_s_is_refused_naming_the_cleanest(clinician):
    with pytest.raises(ApplicationError, match=r"no 10 s of the 40.0 s recording is clean enough. The cleanest "):
        upload(clinician, long_ecg(40, noisy=(0, 40)))
    assert not EcgRecord.objects.exists()


def test_an_upload_can_say_where_its_window_starts(clinician):
    record = upload(clinician, long_ecg(40), window_start_s=25)
    assert (record.window_start_s, record.window_chosen_by) == (25.0, "user")


def test_five_minutes_are_accepted_and_the_limits_agree():
    assert MAX_SECONDS == 300
    # The API's JSON body is one ECG document: Django's body cap and the per-file limit are the same number, so a
    # body is refused as a body (413) and never as a ".json file" the client did not send.
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == MAX_UPLOAD_BYTES
    assert MAX_UPLOAD_BYTES >= 300 * 12 * 1000 * 2 + 64 * 1024  # a 5-minute, 1000 Hz WFDB .dat fits


def test_the_model_and_its_evidence_read_the_analysed_window(clinician, weights_dir, monkeypatch):
    x = long_ecg(40, noisy=(12, 30))
    record = upload(clinician, x)
    ens = services.get_ensemble()
    seen = []
    for name in ("predict", "explain_many"):
        real = getattr(ens, name)

        def spy(signal, *args, _real=real, **kwargs):
            seen.append(np.asarray(signal[0] if isinstance(signal, list) else signal))
            return _real(signal, *args, **kwargs)
        monkeypatch.setattr(ens, name, spy)
    services.inference_run(job_id=record.job.id)
    assert seen, "the model was not run"
    stored = record.signal_array()  # the upload as read (JSON rounds to 0.1 µV)
    for signal in seen:
        np.testing.assert_array_equal(signal, stored[:, 2 * FS:12 * FS])


# --- re-analysis (service) --------------------------------------------------------------------------------------

def test_reanalysing_makes_a_new_ecg_and_leaves_the_reviewed_one_as_it_was(clinician, reviewer,
                                                                           django_capture_on_commit_callbacks):
    original = upload(clinician, long_ecg(40))
    pred = make_result(original)
    with django_capture_on_commit_callbacks() as callbacks:
        new = services.ecg_reanalyse(actor=clinician, record=original, window_start_s=20)
    assert len(callbacks) == 1  # its own inference job is queued
    assert new.pk != original.pk and new.reanalysis_of == original and new.patient == original.patient
    assert (new.window_start_s, new.window_end_s, new.window_chosen_by) == (20.0, 30.0, "user")
    assert bytes(new.signal) == bytes(original.signal) and new.job.state == "queued"
    assert new.quality["window"]["chosen_by"] == "user"
    original.refresh_from_db()
    assert original.window_start_s == 15.0 and original.prediction == pred  # untouched
    event = AuditEvent.objects.get(action="ecg.reanalyse")
    assert event.object_id == str(new.public_id) and event.actor == clinician
    assert event.details["reanalysis_of"] == str(original.public_id)
    assert event.details["window"] == {"start_s": 20.0, "end_s": 30.0, "chosen_by": "user"}
    # A re-analysis of the re-analysis still points at the first upload.
    again = services.ecg_reanalyse(actor=clinician, record=new, window_start_s=5)
    assert again.reanalysis_of == original


@pytest.mark.parametrize("start, said", [
    (-1, "starts between 0 and 30 s; -1 s is outside that"),
    (30.5, "starts between 0 and 30 s; 30.5 s is outside that"),
    (float("nan"), "as a number of seconds from 0 to 30"),
])
def test_a_start_outside_the_record_is_refused_and_nothing_is_stored(clinician, start, said):
    original = upload(clinician, long_ecg(40))
    with pytest.raises(ApplicationError, match=said) as refused:
        services.ecg_reanalyse(actor=clinician, record=original, window_start_s=start)
    assert refused.value.field == "window_start_s"
    assert EcgRecord.objects.count() == 1 and not AuditEvent.objects.filter(action="ecg.reanalyse").exists()


def test_a_window_the_quality_gate_refuses_is_refused_with_its_reasons(clinician):
    original = upload(clinician, long_ecg(40, noisy=(12, 30)))
    with pytest.raises(ApplicationError, match=r"cannot be analysed at 15.0–25.0 s of 40.0 s: .*Choose another start"):
        services.ecg_reanalyse(actor=clinician, record=original, window_start_s=15)
    assert EcgRecord.objects.count() == 1


# --- pages ------------------------------------------------------------------------------------------------------

def _json_script(html: str, element_id: str) -> dict:
    return json.loads(html.split(f'id="{element_id}" type="application/json">')[1].split("</script>")[0])


def test_the_result_page_says_which_window_and_draws_it(client, clinician):
    x = long_ecg(40, noisy=(12, 30))
    record = upload(clinician, x)
    make_result(record)
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "Analysed: 2.0–12.0 s of 40.0 s" in html and "(cleanest 10 s by signal quality)" in html
    overview = _json_script(html, "overview-data")
    shaded = overview["figure"]["layout"]["shapes"][0]
    assert (shaded["x0"], shaded["x1"], overview["record_s"]) == (2.0, 12.0, 40.0)
    assert max(overview["figure"]["data"][0]["x"]) > 39.9  # the strip covers the whole record
    assert 'id="reanalyse-form"' in html and 'max="30"' in html
    # The paper sheet draws the analysed window: lead I's first segment is 2.0-4.5 s of the record.
    paper = _json_script(html, "ecg-plot-data")
    lead_i = paper["figure"]["data"][0]
    np.testing.assert_allclose(lead_i["customdata"], np.round(x[0, 2 * FS:int(4.5 * FS)], 3), atol=1e-3)


def test_a_short_record_is_analysed_whole_and_offers_no_other_window(client, clinician):
    record = upload(clinician, long_ecg(10))
    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "Analysed: 0.0–10.0 s of 10.0 s" in html and "(the whole recording)" in html
    assert 'id="reanalyse-form"' not in html and 'id="overview-data"' not in html


def test_picking_another_window_on_the_page_opens_the_new_result_linked_both_ways(client, clinician):
    original = upload(clinician, long_ecg(40))
    client.force_login(clinician)
    resp = client.post(reverse("clinical:ecg-reanalyse", args=[original.public_id]), {"window_start_s": "20"})
    new = EcgRecord.objects.get(reanalysis_of=original)
    assert resp.status_code == 302 and resp["Location"] == reverse("clinical:ecg-detail", args=[new.public_id])
    html = client.get(resp["Location"]).content.decode()
    assert "Analysed: 20.0–30.0 s of 40.0 s" in html and "(chosen by the user)" in html
    assert reverse("clinical:ecg-detail", args=[original.public_id]) in html and 'id="reanalysis-of"' in html
    first = client.get(reverse("clinical:ecg-detail", args=[original.public_id])).content.decode()
    assert 'id="windows-analysed"' in first
    assert reverse("clinical:ecg-detail", args=[new.public_id]) in first and "20.0–30.0 s" in first
    listed = client.get(reverse("clinical:ecg-list")).content.decode()  # two rows, told apart
    assert "re-analysis · 20.0–30.0 s of 40.0 s" in listed and "15.0–25.0 s of 40.0 s" in listed


@pytest.mark.parametrize("start, said", [
    ("abc", "Enter the start of the window as a number of seconds"),
    ("", "Enter the start of the window as a number of seconds"),
    ("-1", "starts between 0 and 30 s; -1 s is outside that"),
    ("35", "starts between 0 and 30 s; 35 s is outside that"),
])
def test_a_bad_start_on_the_page_is_a_400_saying_why(client, clinician, start, said):
    original = upload(clinician, long_ecg(40))
    client.force_login(clinician)
    resp = client.post(reverse("clinical:ecg-reanalyse", args=[original.public_id]), {"window_start_s": start})
    assert resp.status_code == 400 and said in resp.content.decode()
    assert 'id="reanalyse-errors"' in resp.content.decode()
    assert EcgRecord.objects.count() == 1


def test_only_uploaders_who_can_see_the_ecg_may_reanalyse_it(client, clinician, other_clinician, compliance_officer,
                                                           reviewer):
    original = upload(clinician, long_ecg(40))
    url = reverse("clinical:ecg-reanalyse", args=[original.public_id])
    client.force_login(other_clinician)  # may upload, but did not upload this one
    assert client.post(url, {"window_start_s": "20"}).status_code == 404
    client.force_login(compliance_officer)  # may see every ECG, may not upload
    assert client.post(url, {"window_start_s": "20"}).status_code == 403
    assert 'id="reanalyse-form"' not in client.get(reverse("clinical:ecg-detail",
                                                           args=[original.public_id])).content.decode()
    assert EcgRecord.objects.count() == 1
    client.force_login(reviewer)  # may upload and may see every ECG
    assert client.post(url, {"window_start_s": "20"}).status_code == 302
    assert EcgRecord.objects.get(reanalysis_of=original).uploaded_by == reviewer


# --- API --------------------------------------------------------------------------------------------------------

@pytest.fixture
def api_client(clinician) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=clinician, name='ehr')[1]}")
    return c


def test_the_api_returns_the_analysed_window(api_client, clinician):
    record = upload(clinician, long_ecg(40, noisy=(12, 30)))
    want = {"start_s": 2.0, "end_s": 12.0, "record_s": 40.0, "chosen_by": "quality"}
    result = api_client.get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    assert result["analysed_window"] == want and result["reanalysis_of"] is None
    assert api_client.get(f"/api/v1/ecgs/{record.public_id}/job/").json()["analysed_window"] == want
    listed = api_client.get("/api/v1/patients/PT-LONG/ecgs/").json()["results"][0]
    assert listed["analysed_window"] == want and listed["reanalysis_of"] is None


def test_api_reanalyse_creates_a_new_ecg(api_client, clinician):
    original = upload(clinician, long_ecg(40))
    resp = api_client.post(f"/api/v1/ecgs/{original.public_id}/reanalyse/", {"window_start_s": 20}, format="json")
    assert resp.status_code == 201
    body = resp.json()
    assert body["reanalysis_of"] == str(original.public_id) and body["state"] == "queued"
    assert body["analysed_window"] == {"start_s": 20.0, "end_s": 30.0, "record_s": 40.0, "chosen_by": "user"}
    result = api_client.get(body["result_url"]).json()
    assert result["reanalysis_of"] == str(original.public_id)


def test_api_reanalyse_with_an_idempotency_key_returns_the_first(api_client, clinician):
    original = upload(clinician, long_ecg(40))
    url = f"/api/v1/ecgs/{original.public_id}/reanalyse/"
    first = api_client.post(url, {"window_start_s": 20}, format="json", HTTP_IDEMPOTENCY_KEY="k-1").json()
    again = api_client.post(url, {"window_start_s": 20}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    other = api_client.post(url, {"window_start_s": 5}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_mismatch"
    assert EcgRecord.objects.count() == 2


@pytest.mark.parametrize("payload, said", [
    ({"window_start_s": 31}, "starts between 0 and 30 s; 31 s is outside that"),
    ({"window_start_s": -2}, "starts between 0 and 30 s; -2 s is outside that"),
    ({"window_start_s": "soon"}, "A valid number is required."),
    ({}, "This field is required."),
])
def test_api_reanalyse_refuses_a_bad_start_in_the_error_shape(api_client, clinician, payload, said):
    original = upload(clinician, long_ecg(40))
    resp = api_client.post(f"/api/v1/ecgs/{original.public_id}/reanalyse/", payload, format="json")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "invalid" and said in error["message"] and said in error["fields"]["window_start_s"][0]
    assert EcgRecord.objects.count() == 1


def test_api_reanalyse_of_an_ecg_one_cannot_see_is_404(clinician, other_clinician):
    original = upload(clinician, long_ecg(40))
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=other_clinician, name='x')[1]}")
    resp = c.post(f"/api/v1/ecgs/{original.public_id}/reanalyse/", {"window_start_s": 20}, format="json")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_api_json_of_115_s_at_1000_hz_is_accepted(api_client):
    # An independent tester's 115 s record (8.4 MB of JSON) was refused as "The .json file is 8.4 MB; the limit is
    # 5 MB", a file the client never sent.
    x = demo.synthesize(demo.CASES[0], fs=1000, seconds=115, seed=2)
    body = {"fs": 1000, "patient": {"id": "PT-115", "age": 70, "sex": "F"},
            "leads": {lead: [round(float(v), 3) for v in x[i]] for i, lead in enumerate(demo.LEADS)}}
    raw = json.dumps(body, separators=(",", ":"))
    assert len(raw) > 5 * 2**20
    resp = api_client.post("/api/v1/ecgs/", raw, content_type="application/json")
    assert resp.status_code == 202, resp.json()
    assert resp.json()["analysed_window"]["record_s"] == 115.0


def test_api_upload_may_give_the_window(api_client):
    x = long_ecg(40)
    body = {"fs": FS, "patient": {"id": "PT-W", "age": 70, "sex": "F"}, "window_start_s": 7.5,
            "leads": {lead: x[i].round(4).tolist() for i, lead in enumerate(demo.LEADS)}}
    resp = api_client.post("/api/v1/ecgs/", body, format="json")
    assert resp.status_code == 202
    assert resp.json()["analysed_window"] == {"start_s": 7.5, "end_s": 17.5, "record_s": 40.0, "chosen_by": "user"}
    body["window_start_s"] = 33
    refused = api_client.post("/api/v1/ecgs/", body, format="json").json()["error"]
    assert "window_start_s" in refused["fields"] and "33 s is outside that" in refused["message"]


def test_the_schema_lists_the_window_and_the_reanalyse_operation(api_client):
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    op = schema["paths"]["/api/v1/ecgs/{public_id}/reanalyse/"]["post"]
    assert op["operationId"] == "ecg_reanalyse" and "201" in op["responses"]
    components = schema["components"]["schemas"]
    assert set(components["AnalysedWindow"]["properties"]) == {"start_s", "end_s", "record_s", "chosen_by"}
    for name in ("Job", "Result", "PatientEcg"):
        assert {"analysed_window", "reanalysis_of"} <= set(components[name]["properties"]), name
    assert "window_start_s" in components["SubmitJsonRequest"]["properties"]
    assert "window_start_s" in components["SubmitMultipartRequest"]["properties"]
    assert "300 s" in schema["paths"]["/api/v1/ecgs/"]["post"]["description"]


def test_the_overview_strip_keeps_every_beat_of_five_minutes_in_few_points():
    from clinical.ecgplot import OVERVIEW_POINTS, overview_figure

    x = demo.synthesize(demo.CASES[0], fs=FS, seconds=300, seed=4)
    strip = overview_figure(x, FS, start_s=145.0, end_s=155.0)
    trace = strip["figure"]["data"][0]
    assert len(trace["x"]) <= OVERVIEW_POINTS and trace["x"] == sorted(trace["x"])
    # Min/max decimation: the R peaks of lead II survive (a plain every-Nth-sample strip would miss most of them).
    assert max(trace["y"]) == pytest.approx(float(x[1].max()), abs=1e-3)
    assert strip["figure"]["layout"]["shapes"][0]["x0"] == 145.0 and strip["record_s"] == 300.0
