"""Personas, upload files and model weights for the web-app tests."""
from __future__ import annotations

import json

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
