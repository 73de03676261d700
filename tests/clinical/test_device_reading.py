"""What an exported file says besides the waveform (clinical.intake) is stored with the ECG, shown on the result
page as the device's own reading, and returned by the API."""
from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from clinical import demo, services
from clinical.intake import dispatch, registry
from clinical.intake.leads import complete_leads
from clinical.intake.record import Reading
from mlcore.preprocess import LEADS


@pytest.fixture
def fake_export(monkeypatch):
    """A registered reader for a made-up extension (the real ones are tested per format)."""
    sig = demo.synthesize(demo.CASES[0], fs=500, seed=4)

    def read(content: bytes, name: str) -> Reading:
        columns = {lead: sig[i].astype(np.float64) for i, lead in enumerate(LEADS) if lead in ("I", "II")
                   or lead.startswith("V")}
        notes = complete_leads(columns, what="the test export")
        return Reading(columns=columns, fs=500.0, source_format="test-export",
                       device={"device": "Cart 9000", "acquired": "2024-05-01T10:00:00",
                               "statements": ["Sinus rhythm", "Normal ECG"],
                               "measurements": {"VentricularRate": np.int64(68), "QTc": float("nan")}},
                       notes=notes)

    monkeypatch.setitem(registry.READERS, "tstx", read)
    monkeypatch.setattr(dispatch, "UPLOAD_EXTENSIONS", (*dispatch.UPLOAD_EXTENSIONS, "tstx"))
    return sig


def test_the_device_reading_is_stored_shown_beside_ours_and_returned_by_the_api(client, clinician, fake_export):
    from rest_framework.test import APIClient

    record = services.ecg_submit(actor=clinician, pseudonym="PT-DEV1", age=50, sex="F",
                                 files={"tstx": ("cart.tstx", b"ignored")}, fs=None)
    record.refresh_from_db()
    assert record.source_format == "test-export"
    assert record.device["measurements"] == {"VentricularRate": 68, "QTc": None}  # JSON-safe
    assert record.intake_notes == ["III, aVR, aVL and aVF derived from I and II"]
    # Derived limb leads satisfy Einthoven's law on the stored signal.
    sig = record.signal_array()
    assert np.allclose(sig[LEADS.index("III")], sig[LEADS.index("II")] - sig[LEADS.index("I")], atol=1e-5)
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert "The recording device&#x27;s own reading" in page or "The recording device's own reading" in page
    assert "Cart 9000" in page and "Sinus rhythm" in page
    # Each measurement under its label with its unit; one the file names otherwise keeps its name, no unit.
    assert "<th scope=\"row\">Ventricular rate</th><td>68 /min</td>" in page
    assert '<th scope="row">QTc</th><td><span class="muted">not stated</span></td>' in page  # NaN in the file
    assert "not this system" in page
    api = APIClient()
    api.force_authenticate(clinician)
    body = api.get(f"/api/v1/ecgs/{record.public_id}/result/").json()
    assert body["device_reading"]["statements"] == ["Sinus rhythm", "Normal ECG"]
    assert body["device_reading"]["units"] == {"VentricularRate": "/min", "QTc": ""}


def test_a_wfdb_upload_has_no_device_reading(client, clinician, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-DEV2", age=50, sex="F", files=wfdb_pair, fs=None)
    client.force_login(clinician)
    page = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert 'id="device-reading"' not in page
