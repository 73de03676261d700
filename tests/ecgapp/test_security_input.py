"""Issue 12, rows 7, 8, 10 and 11: hostile input gets a clear 400 (never a 500), operational endpoints are not
public, review notes are bounded and shown with their invisible characters visible, the audit CSV is UTF-8 with
JSON details, and every /api/ answer is the API's error shape."""
from __future__ import annotations

import base64
import csv
import io
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from clinical import services
from clinical.audit import audit_log
from clinical.models import Acknowledgement, Patient
from clinical.tokens import api_token_create
from tests.clinical.conftest import make_result
from tests.clinical.test_api import json_body

OUTSIDE = "203.0.113.7"  # TEST-NET-3: an address in no allow-list
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql",
                                   reason="only PostgreSQL refuses NUL in text (a 500); CI runs these there")


def api(user=None, **extra) -> APIClient:
    client = APIClient(**extra)
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='sec-test')[1]}")
    return client


def assert_error_shape(resp, status: int, field: str | None = None) -> dict:
    assert resp.status_code == status, resp.content[:300]
    assert resp["Content-Type"].split(";")[0].endswith("json"), resp["Content-Type"]
    body = json.loads(resp.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    if field:
        assert field in body["error"]["fields"], body
    return body["error"]


# ---- row 7: malformed input is a 400 with a message, never a 500 ---------------------------------------------------

def test_a_non_ascii_digit_audit_cursor_is_a_form_error(client, compliance_officer):
    client.force_login(compliance_officer)
    resp = client.get(reverse("clinical:audit-list"), {"cursor": "²"})  # str.isdigit() is True; int() fails
    assert resp.status_code == 400
    assert "This page link is broken" in resp.content.decode()


@pytest.mark.parametrize("view", ["clinical:audit-list", "clinical:audit-export"])
def test_an_until_date_at_the_end_of_the_calendar_is_a_form_error(client, compliance_officer, view):
    client.force_login(compliance_officer)
    resp = client.get(reverse(view), {"until": "9999-12-31"})  # the day after it does not exist
    assert resp.status_code == 400
    page = resp.content.decode()
    assert 'id="audit-filter-errors"' in page and "Enter a date between 1900-01-01 and 9998-12-31" in page


def test_filters_that_do_not_validate_show_no_events(client, compliance_officer):
    audit_log(actor=compliance_officer, action="test.event", object_type="X", object_id="1")
    client.force_login(compliance_officer)
    resp = client.get(reverse("clinical:audit-list"), {"since": "2026-05-02", "until": "2026-05-01"})
    assert resp.status_code == 400
    assert "Until must be on or after From" in resp.content.decode()
    assert "test.event" not in resp.content.decode()
    assert client.get(reverse("clinical:audit-list")).status_code == 200  # no filters: the page as before


def _cursor(position: str) -> str:
    return base64.b64encode(f"o=0&r=0&p={position}".encode()).decode()


@pytest.mark.parametrize("cursor", [_cursor("not-a-time"), "%%%garbage", _cursor("2026-13-45 99:00:00")])
def test_a_forged_api_cursor_is_a_400_in_the_error_shape(clinician, cursor):
    resp = api(clinician).get("/api/v1/patients/PT-X/ecgs/", {"cursor": cursor})
    error = assert_error_shape(resp, 400, "cursor")
    assert "follow a page's 'next'" in error["message"]


def test_an_unknown_api_state_filter_is_a_400(clinician):
    assert_error_shape(api(clinician).get("/api/v1/patients/PT-X/ecgs/", {"state": "bogus"}), 400, "state")
    assert api(clinician).get("/api/v1/patients/PT-X/ecgs/", {"state": "done"}).status_code == 200


@postgres_only
def test_a_nul_in_the_patient_path_is_a_400_in_the_error_shape(clinician):
    assert_error_shape(api(clinician).get("/api/v1/patients/%00/ecgs/"), 400)


@postgres_only
def test_a_nul_in_the_api_state_filter_is_a_400(clinician):
    assert_error_shape(api(clinician).get("/api/v1/patients/PT-X/ecgs/?state=%00"), 400)


@postgres_only
@pytest.mark.parametrize("name", ["actor", "action", "patient"])
def test_a_nul_in_an_audit_page_filter_is_a_400(client, compliance_officer, name):
    client.force_login(compliance_officer)
    assert client.get(f"{reverse('clinical:audit-list')}?{name}=%00").status_code == 400


@postgres_only
def test_a_nul_in_the_idempotency_key_is_a_400(clinician):
    resp = api(clinician).post("/api/v1/ecgs/", json_body(), format="json", HTTP_IDEMPOTENCY_KEY="order\x00-1")
    assert_error_shape(resp, 400)


def test_the_nul_guard_answers_pages_and_the_api_before_any_query(client, clinician, django_assert_num_queries):
    with django_assert_num_queries(0):
        page = client.get("/ecgs/audit/?actor=%00")
        resp = APIClient().get("/api/v1/model/", HTTP_X_SOMETHING="a\x00b")
    assert page.status_code == 400 and "NUL" in page.content.decode()
    assert "NUL" in assert_error_shape(resp, 400)["message"]


# ---- row 8: /metrics and the schema are not public -----------------------------------------------------------------

def test_metrics_refuse_an_anonymous_client_from_outside_the_allow_list(client):
    resp = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    assert resp.status_code == 401 and resp["WWW-Authenticate"].startswith("Bearer")
    assert b"ecg_unacknowledged_urgent_results" not in resp.content


def test_metrics_refuse_a_logged_in_user_without_the_monitoring_permission(client, clinician):
    client.force_login(clinician)
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE).status_code == 403


def test_metrics_serve_monitoring_users_allowed_addresses_and_the_token(client, compliance_officer, settings):
    import ipaddress

    assert client.get("/metrics").status_code == 401  # no address is allowed by default, loopback included
    settings.ECG_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.1.2.3").status_code == 200
    assert client.get("/metrics").status_code == 401
    settings.ECG_METRICS_TOKEN = "a-long-random-prometheus-token"
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE,
                      HTTP_AUTHORIZATION="Bearer a-long-random-prometheus-token").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(compliance_officer)
    resp = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    assert resp.status_code == 200 and b"django_http_requests" in resp.content


def test_the_schema_needs_an_authenticated_user_or_an_allowed_address(clinician, db):
    assert_error_shape(APIClient(REMOTE_ADDR=OUTSIDE).get("/api/v1/schema/?format=json"), 401)
    assert_error_shape(APIClient().get("/api/v1/schema/?format=json"), 401)  # the host itself: not by default
    assert api(clinician, REMOTE_ADDR=OUTSIDE).get("/api/v1/schema/?format=json").status_code == 200


def test_the_allow_list_is_read_from_the_environment(monkeypatch):
    from ecgapp.env import ImproperlyConfiguredEnv, env_networks

    monkeypatch.setenv("ECGAPP_METRICS_ALLOW", "127.0.0.1, ::1,10.0.0.0/8")
    assert [str(n) for n in env_networks("ECGAPP_METRICS_ALLOW", [])] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    monkeypatch.setenv("ECGAPP_METRICS_ALLOW", "")
    assert env_networks("ECGAPP_METRICS_ALLOW", ["127.0.0.1"]) == []  # set but empty: no address
    monkeypatch.setenv("ECGAPP_METRICS_ALLOW", "10.0.0.0/33")
    with pytest.raises(ImproperlyConfiguredEnv, match="ECGAPP_METRICS_ALLOW"):
        env_networks("ECGAPP_METRICS_ALLOW", [])


def test_the_worker_metrics_port_follows_the_same_rule(settings):
    """ECGAPP_WORKER_METRICS_PORT: the hook a Celery worker runs at start, refusing an address not allowed."""
    import ipaddress

    from ecgapp.celery import _serve_worker_metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.ECG_WORKER_METRICS_PORT = port
    settings.ECG_METRICS_TOKEN = "worker-token"
    settings.ECG_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]  # not the loopback the test connects from
    _serve_worker_metrics()
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in range(50):
        try:
            urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            break
        except OSError:
            threading.Event().wait(0.05)
        else:
            pytest.fail("the worker's metrics port answered an address that is not allowed")
    else:
        pytest.fail("the worker's metrics port did not answer")
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer worker-token"}),
                                timeout=2) as resp:
        assert resp.status == 200


# ---- row 10: review notes are bounded and shown with invisible characters visible ----------------------------------

@pytest.fixture
def urgent_result(clinician, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-SEC", age=60, sex="F", files=wfdb_pair, fs=None)
    # Uploads now refuse such a pseudonym; rows stored before that may still hold one.
    Patient.objects.filter(pk=record.patient_id).update(pseudonym="PT-\u202eSEC")
    return record, make_result(record, "immediate")


def test_a_page_note_over_5000_characters_is_refused(client, reviewer, urgent_result):
    record, _ = urgent_result
    client.force_login(reviewer)
    url = reverse("clinical:ecg-acknowledge", args=[record.public_id])
    resp = client.post(url, {"verdict": "agree", "note": "x" * 5001})
    assert resp.status_code == 400  # the page again with the error, not a redirect
    assert "at most 5000 characters" in resp.content.decode()
    assert not Acknowledgement.objects.exists()
    client.post(url, {"verdict": "agree", "note": "x" * 5000})
    assert Acknowledgement.objects.get().note == "x" * 5000


def test_bidi_controls_in_notes_and_pseudonyms_are_shown_as_markers_and_stored_as_sent(client, reviewer,
                                                                                      urgent_result):
    record, _ = urgent_result
    client.force_login(reviewer)
    note = "Checked leads \u202eexe.fdp\u202c and\u200b V1\nline two"
    client.post(reverse("clinical:ecg-acknowledge", args=[record.public_id]), {"verdict": "agree", "note": note})
    assert Acknowledgement.objects.get().note == note  # stored unchanged
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "\u202e" not in page and "\u200b" not in page
    assert "Checked leads \\u202eexe.fdp\\u202c and\\u200b V1\nline two" in page
    assert "Patient PT-\\u202eSEC" in page
    listing = client.get(reverse("clinical:ecg-list")).content.decode()
    assert "PT-\\u202eSEC" in listing and "\u202e" not in listing


def test_audit_details_and_actors_are_shown_with_markers(client, compliance_officer):
    audit_log(actor=compliance_officer, action="upload.refused", object_type="Upload", object_id="\u202ecarticle",
              details={"file": "report\u202efdp.exe"})
    client.force_login(compliance_officer)
    page = client.get(reverse("clinical:audit-list")).content.decode()
    assert "\u202e" not in page and "\\u202ecartic" in page


# ---- row 11: the audit CSV, and every /api/ answer in the error shape ----------------------------------------------

def test_the_audit_csv_is_utf8_with_a_bom_and_json_details(client, compliance_officer):
    audit_log(actor=compliance_officer, action="upload.refused", object_type="Upload", object_id="=HYPERLINK(1)",
              details={"file": "Müller.csv", "count": 2, "ok": True, "none": None})
    client.force_login(compliance_officer)
    resp = client.get(reverse("clinical:audit-export"))
    assert resp["Content-Type"] == "text/csv; charset=utf-8"
    raw = b"".join(resp.streaming_content)
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    row = next(r for r in rows if r["action"] == "upload.refused")
    assert json.loads(row["details"]) == {"file": "Müller.csv", "count": 2, "ok": True, "none": None}
    assert row["object_id"] == "'=HYPERLINK(1)"  # the formula-injection guard stays


def test_an_unknown_api_address_is_a_404_in_the_error_shape(client, clinician):
    assert_error_shape(client.get("/api/v1/no-such-thing/"), 404)
    assert_error_shape(api(clinician).get("/api/v1/ecgs/not-a-uuid/job/"), 404)
    assert_error_shape(client.get("/api/v2/"), 404)
    assert "Page not found" in client.get("/no-such-page/").content.decode()  # pages keep the HTML page


def test_more_files_than_django_accepts_is_a_400_in_the_error_shape(clinician, settings):
    files = [SimpleUploadedFile(f"f{i}.csv", b"I,II\n1,2\n") for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1)]
    resp = api(clinician).post("/api/v1/ecgs/", {"files": files, "pseudonym": "PT-MANY", "age": 50, "sex": "F"},
                               format="multipart")
    error = assert_error_shape(resp, 400, "files")
    assert "too many files" in error["message"]

