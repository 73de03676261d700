"""The upload page: good uploads redirect to the result; every bad one says why next to the field, stores nothing."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from clinical import demo
from clinical.models import AuditEvent, EcgRecord, InferenceJob, Patient
from mlcore.preprocess import LEADS
from tests.clinical.conftest import json_bytes

URL = reverse("clinical:ecg-upload")
BASE = {"pseudonym": "PT-7", "age": "58", "sex": "F"}


def csv_of(sig: np.ndarray, names=LEADS) -> bytes:
    buf = io.StringIO()
    buf.write(",".join(names) + "\n")
    np.savetxt(buf, sig.T, delimiter=",", fmt="%.4f")
    return buf.getvalue().encode()


def post(client, files: list[tuple[str, bytes]], **fields):
    data = BASE | fields
    data["files"] = [SimpleUploadedFile(name, content) for name, content in files]
    return client.post(URL, data)


def assert_nothing_stored():
    assert not Patient.objects.exists()
    assert not EcgRecord.objects.exists()
    assert not InferenceJob.objects.exists()
    # The refusal is audited when it reaches the service (form-level errors never do); nothing else clinical is.
    clinical = AuditEvent.objects.exclude(action__startswith="auth.").exclude(action__startswith="role.")
    assert set(clinical.values_list("action", flat=True)) <= {"ecg.upload_refused"}


def test_upload_page_renders_for_a_clinician(client, clinician):
    client.force_login(clinician)
    page = client.get(URL)
    assert page.status_code == 200 and b"Upload a 12-lead ECG" in page.content


def test_login_is_required(client):
    assert client.get(URL).status_code == 302


def test_a_500hz_wfdb_pair_is_stored_and_queued(client, clinician, wfdb_pair, django_capture_on_commit_callbacks):
    client.force_login(clinician)
    with django_capture_on_commit_callbacks() as callbacks:
        resp = post(client, list(wfdb_pair.values()))
    record = EcgRecord.objects.get()
    assert resp.status_code == 302 and resp["Location"].endswith(f"/ecgs/{record.public_id}/")
    assert record.fs == 500 and record.job.state == "queued" and len(callbacks) == 1


def test_a_csv_with_its_rate_is_accepted(client, clinician, csv_upload):
    client.force_login(clinician)
    resp = post(client, list(csv_upload.values()), fs="500")
    assert resp.status_code == 302 and EcgRecord.objects.get().source_format == "csv"


def _sig(fs=500, seconds=10.0):
    return demo.synthesize(demo.CASES[0], fs=fs, seconds=seconds, seed=3)


def _wfdb(tmp, sig, fs, name="r"):
    demo.write_wfdb(sig, fs, name, str(tmp))
    return [(f"{name}.hea", (tmp / f"{name}.hea").read_bytes()), (f"{name}.dat", (tmp / f"{name}.dat").read_bytes())]


def _bad_cases(tmp):
    sig = _sig()
    nan = sig.copy()
    nan[3, 100] = np.nan
    inf_json = {"fs": 500, "leads": {lead: sig[i].tolist() for i, lead in enumerate(LEADS)}}
    inf_json["leads"]["V3"][5] = 1e999
    short = _sig(seconds=5)
    long = _sig(fs=100, seconds=310)
    pair = _wfdb(tmp, sig, 500)
    other = _wfdb(tmp, sig, 500, name="other")
    flat = sig.copy()
    flat[0:4] = 0
    text = csv_of(sig).decode().splitlines()
    text[20] = text[20].replace(text[20].split(",")[4], "abc", 1)
    ragged = csv_of(sig).decode().splitlines()
    ragged[30] = ",".join(ragged[30].split(",")[:-2])
    leads_json = {"fs": 500, "leads": {lead: sig[i].tolist() for i, lead in enumerate(LEADS)}}
    return [
        # (id, files, extra form fields, field with the error, message fragment)
        ("missing-lead", [("a.csv", csv_of(sig[:11], LEADS[:11]))], {"fs": "500"}, "files", "V6"),
        ("extra-lead", [("a.csv", csv_of(np.vstack([sig, sig[:1]]), [*LEADS, "V7"]))], {"fs": "500"}, "files", "V7"),
        ("duplicate-lead", [("a.csv", csv_of(sig, [*LEADS[:11], "V5"]))], {"fs": "500"}, "files", "V5"),
        ("unknown-lead", [("a.csv", csv_of(sig, [*LEADS[:11], "Q9"]))], {"fs": "500"}, "files", "Q9"),
        ("nan-csv", [("a.csv", csv_of(nan))], {"fs": "500"}, "files", "aVR"),
        ("inf-json", [("a.json", json_bytes(inf_json).replace(b"Infinity", b"1e999"))], {}, "files", "V3"),
        ("non-numeric", [("a.csv", "\n".join(text).encode())], {"fs": "500"}, "files", "abc"),
        ("ragged-row", [("a.csv", "\n".join(ragged).encode())], {"fs": "500"}, "files", "row 31"),
        ("too-short", [("a.csv", csv_of(short))], {"fs": "500"}, "files", "8"),
        ("too-long", [("a.csv", csv_of(long))], {"fs": "100"}, "files", "at most 300 s"),
        ("csv-without-fs", [("a.csv", csv_of(sig))], {}, "fs", "sampling rate"),
        ("fs-out-of-range", [("a.csv", csv_of(sig))], {"fs": "5"}, "fs", "50"),
        ("oversize", [("a.csv", b"I,II\n" + b"0.1,0.2\n" * 4_300_000)], {"fs": "500"}, "files", "MB"),
        ("empty-file", [("a.csv", b"")], {"fs": "500"}, "files", "empty"),
        ("mismatched-pair", [pair[0], ("other.dat", other[1][1])], {}, "files", "other.dat"),
        ("truncated-dat", [pair[0], ("r.dat", pair[1][1][:-100])], {}, "files", "bytes"),
        ("garbage-header", [("r.hea", b"\x00\x01garbage"), pair[1]], {}, "files", ".hea"),
        ("only-header", [pair[0]], {}, "files", ".dat"),
        ("only-dat", [pair[1]], {}, "files", ".hea"),
        ("wfdb-99hz", _wfdb(tmp, _sig(fs=99), 99, name="r99"), {}, "files", "100 to 2000 Hz"),
        ("invalid-json", [("a.json", b"{not json")], {}, "files", "JSON"),
        ("json-without-fs", [("a.json", json_bytes({"leads": leads_json["leads"]}))], {}, "files", "fs"),
        ("json-leads-not-dict", [("a.json", json_bytes({"fs": 500, "leads": [1, 2]}))], {}, "files", "leads"),
        ("unsupported-type", [("a.rtf", b"hello")], {}, "files", ".csv"),
        ("xml", [("a.xml", b"<AnnotatedECG/>")], {}, "files", "no rhythm waveform"),
        ("no-file", [], {}, "files", "no file"),
        ("unusable-quality", [("a.json", demo.as_json(flat, 500))], {}, "files", "cannot be analysed"),
        ("bad-pseudonym", [("a.csv", csv_of(sig))], {"fs": "500", "pseudonym": "Jane Doe"}, "pseudonym", "name"),
        ("age-out-of-range", [("a.csv", csv_of(sig))], {"fs": "500", "age": "150"}, "age", "120"),
        ("sex-missing", [("a.csv", csv_of(sig))], {"fs": "500", "sex": ""}, "sex", "choose male, female or unknown"),
        ("age-blank", [("a.csv", csv_of(sig))], {"fs": "500", "age": ""}, "age", "age unknown"),
        ("age-and-unknown", [("a.csv", csv_of(sig))], {"fs": "500", "age_unknown": "on"}, "age", "not both"),
    ]




@pytest.fixture(scope="module")
def bad_cases(tmp_path_factory):
    """The 32 cases, built once for the module (a 310 s recording and a 4.3 million line CSV among them)."""
    return _bad_cases(tmp_path_factory.mktemp("bad-uploads"))


@pytest.mark.parametrize("index", range(32))
def test_bad_input_gets_a_clear_message_next_to_its_field_and_stores_nothing(client, clinician, bad_cases, index):
    case_id, files, fields, field, fragment = bad_cases[index]
    client.force_login(clinician)
    resp = post(client, files, **fields)
    assert resp.status_code == 400, case_id
    html = resp.content.decode()
    match = re.search(rf'<p class="error" role="alert" id="error-{field}">(.*?)</p>', html, re.S)
    assert match, f"{case_id}: no error next to {field}"
    assert fragment.lower() in match.group(1).lower(), f"{case_id}: {match.group(1)!r}"
    assert_nothing_stored()


def test_sex_has_no_preselected_choice(client, clinician):
    """A form left as it opened must not upload a woman's ECG as a man's."""
    client.force_login(clinician)
    html = client.get(URL).content.decode()
    select = re.search(r'<select name="sex".*?</select>', html, re.S).group(0)
    assert re.search(r'<option value="" selected>', select)
    assert "selected" not in select.replace('<option value="" selected>', "")
    assert 'required' in select  # the browser says so too, before the server does


def test_sex_omitted_is_refused_not_taken_for_male(client, clinician, csv_upload):
    client.force_login(clinician)
    data = {"pseudonym": "PT-7", "age": "58", "fs": "500",
            "files": [SimpleUploadedFile(*csv_upload["csv"])]}
    resp = client.post(URL, data)
    assert resp.status_code == 400
    assert 'id="error-sex"' in resp.content.decode()
    assert_nothing_stored()


def test_age_unknown_is_accepted_and_shown_as_unknown(client, clinician, csv_upload):
    client.force_login(clinician)
    resp = post(client, [csv_upload["csv"]], age="", age_unknown="on", fs="500")
    assert resp.status_code == 302
    record = EcgRecord.objects.get()
    assert record.age_at_ecg is None and record.patient.age is None
    assert "age unknown" in client.get(resp["Location"]).content.decode()
    assert "age unknown" in client.get(reverse("clinical:ecg-list")).content.decode()
