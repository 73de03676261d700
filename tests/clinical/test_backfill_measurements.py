"""manage.py backfill_measurements: ECGs stored before measurements existed get them, audited, results untouched."""
from __future__ import annotations

from io import StringIO

import numpy as np
from django.core.management import call_command
from django.urls import reverse

from clinical import services
from clinical.models import AuditEvent, EcgRecord
from mlcore.measure import measure
from mlcore.window import crop
from tests.clinical.conftest import make_result


def test_old_ecgs_are_measured_on_their_window_once_and_their_result_stays(client, clinician, wfdb_pair):
    record = services.ecg_submit(actor=clinician, pseudonym="PT-OLD", age=60, sex="M", files=wfdb_pair, fs=None)
    pred = make_result(record, "routine")
    findings_before = list(pred.findings.values_list("code", flat=True))
    EcgRecord.objects.filter(pk=record.pk).update(measurements={})  # as stored before measurements existed

    out = StringIO()
    call_command("backfill_measurements", stdout=out)
    record.refresh_from_db()
    m = record.measurements
    expected = measure(crop(record.signal_array(), record.fs, record.window_start_s), record.fs)
    assert m["backfilled_at"] and m["qrs_ms"] == expected["qrs_ms"]
    assert m["heart_rate_bpm"] == expected["heart_rate_bpm"]
    assert "1 ECGs measured" in out.getvalue()
    event = AuditEvent.objects.get(action="ecg.measurements_backfill", object_id=str(record.public_id))
    assert event.details["qrs_ms"] == m["qrs_ms"] and event.actor_label == "system"
    assert list(pred.findings.values_list("code", flat=True)) == findings_before  # the result is not rewritten

    call_command("backfill_measurements", stdout=StringIO())  # again: nothing measured twice
    assert AuditEvent.objects.filter(action="ecg.measurements_backfill").count() == 1

    client.force_login(clinician)
    html = client.get(reverse("clinical:ecg-detail", args=[record.public_id])).content.decode()
    assert 'id="measurement-line"' in html and "Measured after this result was made" in html
    assert np.isfinite(m["rr_ms"])
