"""Hostile uploads (tests/clinical/hostile/corpus.py) are refused with a clear message, store nothing, write no
files, and keep the web process's memory bounded: through the service, the upload page, the API, and end to end
against the real gunicorn server. Also: the audit CSV export cannot carry a spreadsheet formula."""
from __future__ import annotations

import csv
import html
import http.client
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import tracemalloc
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from clinical import services
from clinical.audit import audit_log, current_request_id
from clinical.errors import ApplicationError
from clinical.intake import MAX_UPLOAD_BYTES, IntakeError, parse_upload, shown
from clinical.intake.wfdb_record import parse_wfdb
from clinical.models import AuditEvent, EcgRecord, InferenceJob, Patient
from clinical.tokens import api_token_create
from ecgapp.ports import free_port
from tests.clinical.hostile import corpus
from tests.clinical.hostile.multipart import BodyStream, MultipartBody, multipart

ROOT = Path(__file__).resolve().parents[2]
URL = reverse("clinical:ecg-upload")
API_URL = "/api/v1/ecgs/"
CASES = corpus.build()
MAX_MESSAGE_CHARS = 700  # a message says what is wrong and what is accepted, in a few sentences
ONE_GB = 1024**3
ERROR_P = r'<p class="error" role="alert" id="error-{field}">(.*?)</p>'


def test_the_corpus_is_large_and_covers_the_issue():
    assert len(CASES) >= 40
    kinds = " ".join(c.covers for c in CASES)
    for kind in ("truncated .dat", "oversized .dat", "header/data mismatch", "absurd sampling rate",
                 "absurd sample count", "100 MB", "zip-bomb-like", "path traversal", "odd unicode", "NaN / inf",
                 "binary junk with a .csv name", "UTF-16", "another record", "duplicate leads", "missing leads",
                 "wrong units", "another name", "HTML", "formula injection", "deeply nested JSON",
                 "XML billion laughs", "XML external entity (XXE)", "XML 100k-deep nesting",
                 "GE MUSE lead claiming millions of samples", "DICOM claiming huge NumberOfWaveformSamples",
                 "DICOM claiming huge NumberOfWaveformChannels", "EDF header lying about the number of records",
                 "EDF header lying about samples per record", "SCP-ECG section length beyond the file",
                 "each type just over the size limit", "wrong extension for the content"):
        assert kind in kinds, kind


def _stored() -> tuple[int, int, int]:
    return Patient.objects.count(), EcgRecord.objects.count(), InferenceJob.objects.count()


def _refusals() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="ecg.upload_refused").order_by("id"))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Every temporary file of the request (Django's upload spool, the WFDB reader's folder) lands here."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    return spool


def _post(client, body: MultipartBody, path: str = URL, **extra):
    """POST a streamed multipart body through the test client's full request handling."""
    return client.request(REQUEST_METHOD="POST", PATH_INFO=path, CONTENT_TYPE=body.content_type,
                          CONTENT_LENGTH=str(body.length), **{"wsgi.input": BodyStream(body)}, **extra)


def _body(case: corpus.Case, token: str | None = None) -> MultipartBody:
    fields = case.fields | ({"csrfmiddlewaretoken": token} if token else {})
    return multipart(fields, [("files", name, content) for name, content in case.files.values()])


def assert_refused_on_page(case: corpus.Case, status: int, page: str) -> str:
    """The page's message next to the case's field; returns it (unescaped)."""
    assert status == 400, f"{case.name}: status {status}"
    found = re.search(ERROR_P.format(field=case.form_field), page, re.S)
    assert found, f"{case.name}: no message next to {case.form_field}"
    message = html.unescape(found.group(1))
    assert case.expect in message, f"{case.name}: {message!r}"
    assert len(message) < MAX_MESSAGE_CHARS, f"{case.name}: a {len(message)}-character message"
    for text in case.forbidden:
        assert text not in page, f"{case.name}: {text!r} is on the page unescaped"
    return message


# ---------------------------------------------------------------------------------------------------------------
# Through the service, the upload page and the API, in process


@pytest.mark.parametrize("case", [c for c in CASES if c.direct], ids=lambda c: c.name)
def test_service_refuses_and_audits_only_the_refusal(case, clinician, private_tmp):
    with pytest.raises(ApplicationError) as caught:
        services.ecg_submit(actor=clinician, **case.submit_kwargs())
    assert caught.value.field == case.field and case.expect in caught.value.message, caught.value.message
    assert _stored() == (0, 0, 0)
    (event,) = _refusals()
    assert event.details == {"field": case.field, "reason": caught.value.message,
                             "files": sorted(shown(name, 200) for name, _ in case.files.values())}
    # A direct caller's file name reaches the audit as sent, but escaped: a NUL (which jsonb cannot hold) as \u0000
    assert all("\x00" not in name and "\u202e" not in name for name in event.details["files"])
    assert not list(private_tmp.iterdir())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_upload_page_refuses_with_the_message_next_to_the_field(case, client, clinician, private_tmp):
    client.force_login(clinician)
    before = AuditEvent.objects.count()
    resp = _post(client, _body(case))
    message = assert_refused_on_page(case, resp.status_code, resp.content.decode())
    assert _stored() == (0, 0, 0)
    new = list(AuditEvent.objects.order_by("id")[before:])
    if case.stage == "service":  # refused by ecg_submit: the refusal, and nothing else, is audited
        assert [e.action for e in new] == ["ecg.upload_refused"] and new[0].details["reason"] == message
    else:  # refused by the form before anything is read
        assert new == []
    assert not list(private_tmp.iterdir()), "a temporary file was left behind"


@pytest.mark.parametrize("name", ["wfdb-dat-100mb", "csv-33mb", "wfdb-dat-over-32mb", "wfdb-dat-of-another-record",
                                  "many-files", "xml-billion-laughs", "xml-muse-claims-5-million-samples",
                                  "dcm-claims-2-billion-samples", "edf-claims-99999999-records",
                                  "scp-section-beyond-file", "xml-over-limit"])
def test_with_the_capped_upload_handler_large_files_cost_neither_memory_nor_disk(name, client, clinician, private_tmp):
    from django.conf import settings

    assert settings.FILE_UPLOAD_HANDLERS == ["clinical.forms.CappedUploadHandler"]  # the default, not an override
    case = next(c for c in CASES if c.name == name)
    client.force_login(clinician)
    tracemalloc.start()
    try:
        resp = _post(client, _body(case))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_refused_on_page(case, resp.status_code, resp.content.decode())
    # At most one file's worth is kept (MAX_UPLOAD_BYTES), besides the body this test builds in memory (up to 33 MB
    # for csv-33mb); a 100 MB upload kept whole would exceed it.
    assert peak < 2 * MAX_UPLOAD_BYTES + 16 * 2**20, f"{peak / 2**20:.0f} MB allocated to refuse {name}"
    assert not list(private_tmp.iterdir()) and _stored() == (0, 0, 0)


def test_capped_upload_handler_keeps_small_files_whole(client, clinician, wfdb_pair, private_tmp):
    client.force_login(clinician)
    files = [SimpleUploadedFile(name, content) for name, content in wfdb_pair.values()]
    resp = client.post(URL, {"pseudonym": "PT-OK", "age": "50", "sex": "M", "files": files})
    assert resp.status_code == 302 and EcgRecord.objects.get().n_samples == 5000


API_CASES = ["wfdb-dat-of-another-record", "csv-nan", "json-nested-100k-deep", "wfdb-fs-1e9", "wfdb-dat-over-32mb",
             "wfdb-dat-100mb", "csv-html-pseudonym", "xml-billion-laughs", "xml-external-entity",
             "xml-nested-100k-deep", "xml-muse-lead-of-1.5-million-samples", "dcm-claims-2-billion-samples",
             "edf-claims-99999999-samples-per-record", "scp-section-beyond-file", "edf-over-limit", "dcm-that-is-xml"]


def assert_api_error(resp, status: int, code: str, fragment: str, field: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.content[:300])
    body = json.loads(resp.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}, body
    error = body["error"]
    assert error["code"] == code and fragment in error["message"], error
    assert len(error["message"]) < MAX_MESSAGE_CHARS
    if field:
        assert fragment in error["fields"][field][0], error
    return error


def _api_field(case: corpus.Case) -> str:
    return "files" if case.stage == "form" else case.field


@pytest.mark.parametrize("name", API_CASES)
def test_api_multipart_refuses_in_the_error_shape(name, clinician, private_tmp):
    case = next(c for c in CASES if c.name == name)
    token = api_token_create(user=clinician, name="hostile")[1]
    fields = {k: v for k, v in case.fields.items() if v}
    body = multipart(fields, [("files", n, c) for n, c in case.files.values()])
    resp = _post(APIClient(), body, API_URL, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert_api_error(resp, 400, "invalid", case.expect, _api_field(case))
    assert _stored() == (0, 0, 0) and len(_refusals()) == (case.stage == "service")
    assert not list(private_tmp.iterdir())


def _json_body(leads_text: str = "") -> bytes:
    leads = leads_text or json.dumps({lead: [0.1] * 5000 for lead in corpus.LEADS})
    return (b'{"fs": 500, "patient": {"id": "PT-API", "age": 60, "sex": "F"}, "leads": ' + leads.encode()
            + b"}")


# (name, body, status, code, message fragment, audited): a body the serializer refuses never reaches the service;
# one it passes on (the samples are checked by the intake parser) is refused there, and that refusal is audited.
JSON_BODIES = [
    ("nested", b"[" * 50_000 + b"]" * 50_000, 400, "invalid", "nested too deeply", False),
    ("too-large", b" " * (33 * 2**20) + _json_body(), 413, "too_large",
     "The request body is 33.", False),
    ("nan-literal", _json_body(json.dumps({"I": [float("nan")]})), 400, "invalid", "JSON parse error", False),
    ("400-digit-number", _json_body(json.dumps({lead: [0.1] * 5000 for lead in corpus.LEADS})
                                    .replace("0.1", "1" + "0" * 400, 1)), 400, "invalid",
     "Lead I, sample 1: a 401-digit number is far too large to be millivolts", True),
    ("not-a-number", _json_body(json.dumps({lead: [0.1] * 5000 for lead in corpus.LEADS})
                                .replace("0.1", '"0.1"', 1)), 400, "invalid", 'Lead I, sample 1: "0.1" is not a number',
     True),
    ("million-samples", _json_body(json.dumps({"I": [0] * 1_000_000})), 400, "invalid",
     "Lead I: at most 600,000 samples are accepted; got 1,000,000", False),
]


@pytest.mark.parametrize(("body", "status", "code", "fragment", "audited"), [b[1:] for b in JSON_BODIES],
                         ids=[b[0] for b in JSON_BODIES])
def test_api_json_body_refuses_in_the_error_shape(body, status, code, fragment, audited, clinician):
    token = api_token_create(user=clinician, name="hostile")[1]
    started = time.monotonic()
    resp = APIClient().post(API_URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    error = assert_api_error(resp, status, code, fragment)
    assert time.monotonic() - started < 10
    assert _stored() == (0, 0, 0) and len(_refusals()) == audited
    if audited:  # the fault is named as the body's field, not the parser's "json"
        assert list(error["fields"]) == ["leads"] and _refusals()[0].details["reason"] == error["message"]


def test_xml_entities_are_refused_where_declared_so_no_bomb_is_ever_expanded():
    """By construction, not by timing: the XML reader parses with defusedxml, which refuses an entity declaration
    itself; a document declaring one harmless entity that it never uses is refused like the billion laughs."""
    from defusedxml import ElementTree as defused

    from clinical.intake import xml

    assert xml.fromstring is defused.fromstring
    harmless = b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY a "a">]><RestingECG/>'
    with pytest.raises(IntakeError, match="declares entities"):
        parse_upload(files={"file": ("ecg.xml", harmless)}, fs=None)


def test_an_external_dtd_is_not_fetched(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("the XML reader opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    case = next(c for c in CASES if c.name == "xml-external-dtd")
    with pytest.raises(IntakeError, match="no rhythm waveform"):
        parse_upload(files=case.files, fs=None)


@pytest.mark.parametrize("mu", ["\u00b5", "\u03bc"])
def test_a_header_in_microvolts_spelt_with_a_mu_is_read_as_microvolts(mu):
    """wfdb reads headers as ASCII: "µV" used to become "V", a million times too large. Now it is uV."""
    sig = corpus._signal()
    hea, dat = corpus._wfdb(sig * 1000, gain=1)
    hea = hea.replace(b"/mV", f"/{mu}V".encode())
    assert mu.encode() in hea
    parsed = parse_wfdb(hea, dat, hea_name="rec.hea", dat_name="rec.dat")
    np.testing.assert_allclose(parsed.signal, sig, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# The audit CSV export


FORMULAS = ['=HYPERLINK("http://x","click")', "+1+1", "-2+3", "@SUM(A1:A2)", "\tcmd", "\r=1+1"]


def _export(client) -> list[list[str]]:
    resp = client.get(reverse("clinical:audit-export"))
    assert resp.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(resp.streaming_content).decode("utf-8-sig"))))  # UTF-8 with a BOM


def test_audit_export_neutralises_formulas_and_keeps_the_data(client, clinician, compliance_officer):
    from django.contrib.auth.models import User

    odd_user = User.objects.create_user("-A1+cmd", password="pw-for-tests-1")
    for i, text in enumerate(FORMULAS):
        token = current_request_id.set(text)
        try:
            audit_log(actor=odd_user, action="test.formula", object_type="Thing", object_id=text,
                      details={"i": i, "name": text})
        finally:
            current_request_id.reset(token)
    # A refused upload whose file name is a formula: the name is in the event's details.
    case = next(c for c in CASES if c.name == "csv-formula-file-name")
    with pytest.raises(ApplicationError):
        services.ecg_submit(actor=clinician, **case.submit_kwargs())
    client.force_login(compliance_officer)
    rows = _export(client)
    header, body = rows[0], rows[1:]
    assert header[:4] == ["id", "at", "actor", "action"]
    events = {e.id: e for e in AuditEvent.objects.all()}
    checked = 0
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), f"formula cell {cell!r}"
        e = events[int(row[0])]
        expected = [str(e.id), e.at.isoformat(), e.actor_label, e.action, e.object_type, e.object_id, e.request_id,
                    e.ip or "", json.dumps(e.details, ensure_ascii=False, default=str), e.prev_hash, e.hash]
        unquoted = [c[1:] if c.startswith("'") and c[1:2] in ("=", "+", "-", "@", "\t", "\r") else c for c in row]
        assert unquoted == expected  # the data is unchanged but for the quote
        checked += e.action == "test.formula"
    assert checked == len(FORMULAS)
    formula_rows = [r for r in body if r[3] == "test.formula"]
    assert {r[5] for r in formula_rows} == {"'" + f for f in FORMULAS}
    assert {r[2] for r in formula_rows} == {"'-A1+cmd"}
    refused = next(r for r in body if r[3] == "ecg.upload_refused")
    assert "=cmd|' -c calc'!A0.csv" in refused[8] and refused[8].startswith("{")


# ---------------------------------------------------------------------------------------------------------------
# End to end: the real web server (gunicorn, one worker), every case over HTTP


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


class WebServer:
    """gunicorn ecgapp.wsgi:application -c gunicorn.conf.py, as production runs it, on a private data folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.spool = root / "tmp"
        self.spool.mkdir()
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ECGAPP_", "GUNICORN_",
                                                                           "PROMETHEUS_", "PYTEST_"))}
        self.env = keep | {
            "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": "1", "GUNICORN_TIMEOUT": "120",
            "ECGAPP_DATA_DIR": str(root / "data"), "ECGAPP_DEMO": "1", "ECGAPP_API_RATE": "100000/min",
            "DJANGO_SETTINGS_MODULE": "ecgapp.settings.base", "TMPDIR": str(self.spool), "PYTHONPATH": str(ROOT),
        }
        self.proc: subprocess.Popen | None = None
        self.cookies: dict[str, str] = {}

    def manage(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, f"manage.py {args[0]} failed:\n{out.stderr[-3000:]}"
        return out.stdout

    def start(self) -> None:
        self.log = open(self.root / "web.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "ecgapp.wsgi:application", "-c",
                                      "gunicorn.conf.py"], cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "web.log").read_text()[-3000:]
            try:
                if self.request("GET", "/health/live")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("gunicorn did not answer within 90 s:\n" + (self.root / "web.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()

    def worker_pid(self) -> int:
        assert self.proc is not None
        (pid,) = _children(self.proc.pid)
        return pid

    def request(self, method: str, path: str, body: bytes | MultipartBody = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.putrequest(method, path)
            all_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} | (headers or {})
            if isinstance(body, MultipartBody):
                all_headers |= {"Content-Type": body.content_type, "Content-Length": str(body.length)}
            elif body:
                all_headers["Content-Length"] = str(len(body))
            for key, value in all_headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            try:
                for chunk in body.chunks() if isinstance(body, MultipartBody) else [body]:
                    conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered before reading everything; its answer is still there to read
            resp = conn.getresponse()
            data = resp.read()
            for value in resp.headers.get_all("Set-Cookie") or []:
                for morsel in SimpleCookie(value).values():
                    self.cookies[morsel.key] = morsel.value
            return resp.status, dict(resp.headers), data
        finally:
            conn.close()

    def csrf_token(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, (path, status)
        return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()

    def login(self, username: str, password: str) -> None:
        token = self.csrf_token("/login/")
        form = urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password}).encode()
        status, headers, _ = self.request("POST", "/login/", form,
                                          {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, f"login failed ({status})"

    def counts(self) -> dict[str, int]:
        script = ("import json; from clinical.models import *; "
                  "print(json.dumps({'patients': Patient.objects.count(), 'records': EcgRecord.objects.count(), "
                  "'jobs': InferenceJob.objects.count(), 'refused': AuditEvent.objects.filter("
                  "action='ecg.upload_refused').count(), 'uploads': AuditEvent.objects.filter("
                  "action='ecg.upload').count()}))")
        return json.loads(self.manage("shell", "-c", script).strip().splitlines()[-1])


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    if not Path("/proc/self/status").exists():
        pytest.skip("reads peak memory from /proc (Linux)")
    server = WebServer(tmp_path_factory.mktemp("hostile-web"))
    server.username = f"hostile-{secrets.token_hex(4)}"  # unique: DATABASE_URL may point at a shared database
    server.password = secrets.token_urlsafe(16)
    # One process for the set-up (each manage.py start costs ~2 s of imports): migrate, the roles, a clinician and
    # an API token, as `migrate`, `setup_roles` and `api_token create` do them.
    out = server.manage("shell", "-c", "from django.core.management import call_command; "
                        "call_command('migrate', interactive=False, verbosity=0); call_command('setup_roles'); "
                        "from django.contrib.auth.models import Group, User; "
                        "from clinical.tokens import api_token_create; "
                        f"u = User.objects.create_user({server.username!r}, password={server.password!r}); "
                        "u.groups.add(Group.objects.get(name='clinician')); "
                        "print('TOKEN', api_token_create(user=u, name='hostile', days=1)[1])")
    server.api_token = out.split("TOKEN ")[-1].split()[0]
    server.start()
    yield server
    server.stop()


def test_every_case_over_http_is_refused_with_bounded_memory_and_nothing_stored(web):
    before = web.counts()
    web.login(web.username, web.password)
    worker = web.worker_pid()
    baseline_kb = _status_kb(worker, "VmHWM")
    failures = []
    for case in CASES:
        token = web.csrf_token(URL)
        status, _, page = web.request("POST", URL, _body(case, token))
        try:
            assert_refused_on_page(case, status, page.decode())
        except AssertionError as exc:
            failures.append(str(exc))
    api_refused = 0
    for name in API_CASES:
        case = next(c for c in CASES if c.name == name)
        fields = {k: v for k, v in case.fields.items() if v}
        status, _, data = web.request("POST", API_URL, multipart(fields, [("files", n, c) for n, c in
                                                                         case.files.values()]),
                                      {"Authorization": f"Bearer {web.api_token}"})
        error = json.loads(data)["error"]
        if status != 400 or case.expect not in error["message"] or set(error) != {"code", "message", "fields"}:
            failures.append(f"API {name}: {status} {error}")
        api_refused += case.stage == "service"
    for name, body, want_status, code, fragment, audited in JSON_BODIES:
        status, _, data = web.request("POST", API_URL, body, {"Authorization": f"Bearer {web.api_token}",
                                                              "Content-Type": "application/json"})
        error = json.loads(data)["error"]
        if status != want_status or error["code"] != code or fragment not in error["message"]:
            failures.append(f"API JSON {name}: {status} {error}")
        api_refused += audited
    assert web.worker_pid() == worker, "the worker was replaced (it crashed or timed out)"
    peak_kb = _status_kb(worker, "VmHWM")
    print(f"\ngunicorn worker peak memory (VmHWM): {peak_kb / 1024:.0f} MB after {len(CASES)} page cases, "
          f"{len(API_CASES) + len(JSON_BODIES)} API requests (it was {baseline_kb / 1024:.0f} MB after start-up)")
    assert not failures, "\n".join(failures)
    assert peak_kb * 1024 < ONE_GB
    after = web.counts()
    page_refused = sum(c.stage == "service" for c in CASES)
    assert after == before | {"refused": before["refused"] + page_refused + api_refused}
    assert not list(web.spool.iterdir()), "temporary files were left behind"
    media = web.root / "data" / "media"
    assert not media.exists() or not any(media.rglob("*"))
