"""Personas, upload files and model weights for the web-app tests."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from django.contrib.auth.models import Group, User

from clinical import demo
from clinical.roles import roles_ensure


def _user(username: str, role: str) -> User:
    roles_ensure()
    user = User.objects.create_user(username=username, password="pw-for-tests-1")
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def clinician(db) -> User:
    return _user("dr-ada", "clinician")


@pytest.fixture
def other_clinician(db) -> User:
    """A clinician who did not upload the ECG under test."""
    return _user("dr-bo", "clinician")


@pytest.fixture
def reviewer(db) -> User:
    return _user("rev-cy", "reviewer")


@pytest.fixture
def ecg_500hz() -> np.ndarray:
    return demo.synthesize(demo.CASES[0], fs=500, seed=1)


@pytest.fixture
def wfdb_pair(tmp_path, ecg_500hz) -> dict[str, tuple[str, bytes]]:
    demo.write_wfdb(ecg_500hz, 500, "rec500", str(tmp_path))
    return {"hea": ("rec500.hea", (tmp_path / "rec500.hea").read_bytes()),
            "dat": ("rec500.dat", (tmp_path / "rec500.dat").read_bytes())}


@pytest.fixture
def csv_upload(ecg_500hz) -> dict[str, tuple[str, bytes]]:
    return {"csv": ("ecg.csv", demo.as_csv(ecg_500hz))}


def json_bytes(d: dict) -> bytes:
    return json.dumps(d).encode()


@pytest.fixture
def compliance_officer(db) -> User:
    return _user("comp-di", "compliance")


@pytest.fixture
def integrator(db) -> User:
    return _user("int-ed", "integrator")


@pytest.fixture
def admin_user_role(db) -> User:
    return _user("adm-fay", "admin")


def make_result(record, urgency: str = "immediate", created_at=None):
    """A stored result with one finding and one action, without running the model (for workflow tests)."""
    from django.utils import timezone

    from clinical import compact
    from clinical.models import Finding, InferenceJob, Prediction, Recommendation

    explanations, evidence = compact.evidence_encode({"superclass:MI": compact.Evidence(
        gradcam=np.zeros(1000), lead_maps=np.zeros((12, 1000)), lead_relevance=np.full(12, 1 / 12))})
    pred = Prediction.objects.create(
        record=record, model_version="test", superclass={"MI": 0.9}, statements={}, spread={},
        embedding=[], explanations=explanations, evidence=evidence, evidence_state="ready", top_urgency=urgency,
        inference_ms=1.0)
    if created_at is not None:
        Prediction.objects.filter(pk=pred.pk).update(created_at=created_at)
        pred.refresh_from_db()
    Finding.objects.create(prediction=pred, head="superclass", code="MI", display="Myocardial infarction",
                           probability=0.9, threshold=0.4, spread=0.02, rank=0)
    Recommendation.objects.create(prediction=pred, rank=0, action="Act now", urgency=urgency, reasoning="r",
                                  source="s", triggered_by="superclass:MI", confidence=0.9, table_version="t",
                                  rule_id="superclass:MI")
    InferenceJob.objects.filter(record=record).update(state="done", progress=100, finished_at=timezone.now())
    return pred


class WebhookReceiver(BaseHTTPRequestHandler):
    """A real HTTP endpoint on loopback that records what webhooks POST to it."""

    received: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        WebhookReceiver.received.append({"content_type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    server = HTTPServer(("127.0.0.1", 0), WebhookReceiver)
    WebhookReceiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/ecg-hook"
    server.shutdown()
    server.server_close()
