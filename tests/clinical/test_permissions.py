"""Role x page/action matrix: every cell asserts allowed or forbidden, server-side."""
from __future__ import annotations

import pytest
from django.urls import reverse

from clinical import services
from tests.clinical.conftest import make_result

ROLES = ["anonymous", "clinician", "other_clinician", "reviewer", "compliance", "integrator", "admin"]
# Expected outcome per action: "ok" (2xx/3xx that is not a login redirect), "login" (sent to log in),
# "forbidden" (403) or "hidden" (404: the ECG is not theirs to see, so its existence is not revealed).
MATRIX = {
    #                   anonymous  clinician  other_clin   reviewer   compliance  integrator  admin
    "list":            ["login",   "ok",      "ok",        "ok",      "ok",       "forbidden", "ok"],
    "upload_page":     ["login",   "ok",      "ok",        "ok",      "forbidden", "forbidden", "ok"],
    "upload_post":     ["login",   "ok",      "ok",        "ok",      "forbidden", "forbidden", "ok"],
    "detail":          ["login",   "ok",      "hidden",    "ok",      "ok",       "hidden",    "ok"],
    "status":          ["login",   "ok",      "hidden",    "ok",      "ok",       "hidden",    "ok"],
    "overlay_viewed":  ["login",   "ok",      "hidden",    "ok",      "ok",       "hidden",    "ok"],
    "retry":           ["login",   "ok",      "hidden",    "ok",      "forbidden", "forbidden", "ok"],
    "acknowledge":     ["login",   "forbidden", "forbidden", "ok",    "forbidden", "forbidden", "ok"],
    "review_queue":    ["login",   "forbidden", "forbidden", "ok",    "forbidden", "forbidden", "ok"],
    "worklist":        ["login",   "forbidden", "forbidden", "ok",    "forbidden", "forbidden", "ok"],
    "read_page":       ["login",   "forbidden", "forbidden", "ok",    "forbidden", "forbidden", "ok"],
    "confirm":         ["login",   "forbidden", "forbidden", "ok",    "forbidden", "forbidden", "ok"],
    "audit_list":      ["login",   "forbidden", "forbidden", "forbidden", "ok",   "forbidden", "ok"],
    "audit_export":    ["login",   "forbidden", "forbidden", "forbidden", "ok",   "forbidden", "ok"],
}


PERSONA_FIXTURES = {"clinician": "clinician", "other_clinician": "other_clinician", "reviewer": "reviewer",
                    "compliance": "compliance_officer", "integrator": "integrator", "admin": "admin_user_role"}


@pytest.fixture
def people(request):
    """role -> the persona, made when a case asks for it (each case needs one, not all six)."""
    class People(dict):
        def __missing__(self, role):
            self[role] = request.getfixturevalue(PERSONA_FIXTURES[role])
            return self[role]
    return People()


def _request(client, action, record, csv_upload):
    pid = record.public_id
    if action == "list":
        return client.get(reverse("clinical:ecg-list"))
    if action == "upload_page":
        return client.get(reverse("clinical:ecg-upload"))
    if action == "upload_post":
        from django.core.files.uploadedfile import SimpleUploadedFile

        name, data = csv_upload["csv"]
        return client.post(reverse("clinical:ecg-upload"), {"pseudonym": "PT-M2", "age": "50", "sex": "F",
                                                            "fs": "500", "files": [SimpleUploadedFile(name, data)]})
    if action == "detail":
        return client.get(reverse("clinical:ecg-detail", args=[pid]))
    if action == "status":
        return client.get(reverse("clinical:ecg-status", args=[pid]))
    if action == "overlay_viewed":
        return client.post(reverse("clinical:ecg-overlay-viewed", args=[pid]), {"overlay": "superclass:MI"})
    if action == "retry":
        return client.post(reverse("clinical:ecg-retry", args=[pid]))
    if action == "acknowledge":
        return client.post(reverse("clinical:ecg-acknowledge", args=[pid]), {"verdict": "agree", "note": "seen it"})
    if action == "review_queue":
        return client.get(reverse("clinical:review-queue"))
    if action == "worklist":
        return client.get(reverse("clinical:review-queue"), {"list": "worklist"})
    if action == "read_page":
        return client.get(reverse("clinical:ecg-read", args=[pid]))
    if action == "confirm":  # every persona's password is the fixtures' (tests.clinical.conftest)
        return client.post(reverse("clinical:ecg-read", args=[pid]), {"intent": "confirm",
                                                                      "password": "pw-for-tests-1"})
    if action == "audit_list":
        return client.get(reverse("clinical:audit-list"))
    if action == "audit_export":
        return client.get(reverse("clinical:audit-export"))
    raise AssertionError(action)


CASES = [(action, role, expected) for action, row in MATRIX.items() for role, expected in zip(ROLES, row)]


@pytest.mark.parametrize(("action", "role", "expected"), CASES, ids=[f"{a}-{r}" for a, r, _ in CASES])
def test_role_action_matrix(client, people, clinician, wfdb_pair, csv_upload, action, role, expected):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-M", age=50, sex="M", files=wfdb_pair, fs=None)
    make_result(record, "urgent")
    if role != "anonymous":
        client.force_login(people[role])
    resp = _request(client, action, record, csv_upload)
    location = resp.get("Location", "")
    if expected == "login":
        assert resp.status_code == 302 and "/login/" in location
    elif expected == "forbidden":
        assert resp.status_code == 403
    elif expected == "hidden":
        assert resp.status_code == 404
    else:
        assert resp.status_code in (200, 302) and "/login/" not in location, resp.status_code


def test_matrix_is_big_enough():
    assert len(CASES) >= 40
