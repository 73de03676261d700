"""Personas, upload files and model weights for the web-app tests."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from django.contrib.auth.models import User

from clinical import demo
from tests.factories import UserFactory, result_stored


def _user(username: str, role: str) -> User:
    return UserFactory(username=username, role=role)


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
    return result_stored(record, urgency, created_at)


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
