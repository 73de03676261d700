"""clinical.compact and migration 0016: signals stored losslessly and small, evidence as uint8, old rows converted."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from clinical import compact, demo
from clinical.intake import parse_upload
from tests.clinical import export_fixtures


def test_a_wfdb_upload_is_stored_as_its_int16_codes_bit_for_bit_in_less_than_int16(wfdb_pair):
    signal = parse_upload(files=wfdb_pair, fs=None).signal  # (12, 5000) float32 mV, 1000 codes per mV
    encoding, data = compact.signal_encode(signal)
    assert encoding == compact.INT16_DELTA_ZLIB
    back = compact.signal_decode(encoding, data, signal.shape[1])
    assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), signal.view(np.uint32))
    assert len(data) < signal.size * 2  # the int16 codes alone (this synthetic ECG is noisier than a real one)


@pytest.mark.parametrize("make", [export_fixtures.philips_xml, export_fixtures.muse_xml])
def test_device_exports_come_back_bit_for_bit(make):
    signal = parse_upload(files={"file": ("e.xml", make())}, fs=None).signal
    encoding, data = compact.signal_encode(signal)
    assert np.array_equal(compact.signal_decode(encoding, data, signal.shape[1]).view(np.uint32),
                          signal.view(np.uint32))


def test_decimal_millivolts_that_are_no_device_codes_are_kept_exactly_as_zlib_float32():
    rng = np.random.default_rng(3)
    signal = rng.normal(0, 0.5, (12, 5000)).astype(np.float32)
    encoding, data = compact.signal_encode(signal)
    assert encoding == compact.FLOAT32_ZLIB
    assert np.array_equal(compact.signal_decode(encoding, data, 5000), signal)


def test_a_text_export_with_four_decimals_beyond_int16_is_kept_as_int32_codes():
    signal = (np.round(np.random.default_rng(5).normal(0, 2.0, (12, 5000)), 4)).astype(np.float32)  # > ±3.28 mV
    encoding, data = compact.signal_encode(signal)
    assert encoding == compact.INT32_DELTA_ZLIB
    assert np.array_equal(compact.signal_decode(encoding, data, 5000), signal)


def test_codes_whose_differences_overflow_int16_still_come_back():
    signal = np.zeros((12, 4), dtype=np.float32)
    signal[0] = np.array([-32.0, 32.0, -32.0, 32.0], dtype=np.float32)  # ±32000 codes at 1000/mV: steps of 64000
    encoding, data = compact.signal_encode(signal)
    assert encoding == compact.INT16_DELTA_ZLIB
    assert np.array_equal(compact.signal_decode(encoding, data, 4), signal)


def test_evidence_round_trips_within_one_step_of_1_255():
    rng = np.random.default_rng(0)
    maps = {f"statements:X{i}": compact.Evidence(gradcam=rng.random(1000), lead_maps=rng.random((12, 1000)),
                                                 lead_relevance=rng.dirichlet(np.ones(12))) for i in range(3)}
    index, data = compact.evidence_encode(maps)
    for key, ex in maps.items():
        got = compact.evidence_decode(index, data, key)
        assert np.abs(got.lead_maps - ex.lead_maps).max() <= 0.5 / 255 + 1e-6
        assert np.abs(got.gradcam - ex.gradcam).max() <= 0.5 / 255 + 1e-6
        assert np.allclose(got.lead_relevance, ex.lead_relevance, atol=5e-4)
    assert compact.evidence_decode(index, data, "superclass:NORM") is None
    assert compact.evidence_encode({}) == ({}, b"")


def test_a_10_s_500_hz_result_with_evidence_is_stored_in_under_1_5_times_its_int16_signal(clinician, wfdb_pair,
                                                                                         weights_dir):
    from clinical import services
    from clinical.models import Prediction

    record = services.ecg_submit(actor=clinician, pseudonym="PT-1", age=60, sex="F", files=wfdb_pair, fs=None)
    services.inference_run(job_id=record.job.id)
    services.evidence_compute(prediction_id=record.prediction.pk)
    record.refresh_from_db()
    pred = Prediction.objects.get(record=record)
    assert pred.evidence_state == Prediction.EvidenceState.READY and pred.evidence
    stored = (len(bytes(record.signal)) + len(json.dumps(pred.explanations)) + len(bytes(pred.evidence))
              + len(json.dumps(record.measurements)))
    assert stored <= 1.5 * 12 * 5000 * 2
    assert np.array_equal(record.signal_array(), parse_upload(files=wfdb_pair, fs=None).signal)


@pytest.fixture
def audit_guard_allows_test_flush(transactional_db):
    """A transactional test ends with a flush; on SQLite the append-only guard is lifted for it (as in
    tests/browser/conftest.py), then put back."""
    guard = importlib.import_module("clinical.migrations.0003_auditevent_append_only")
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            for sql in guard.SQLITE_CREATE:
                cur.execute(sql)
    yield
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            for sql in guard.SQLITE_DROP:
                cur.execute(sql)


def test_migration_0016_converts_stored_rows_and_back(audit_guard_allows_test_flush, clinician):
    executor = MigrationExecutor(connection)
    executor.migrate([("clinical", "0016_import_evidence_option_uploader_sha256")])
    old = executor.loader.project_state([("clinical", "0016_import_evidence_option_uploader_sha256")]).apps
    signal = (np.round(demo.synthesize(demo.CASES[0], fs=500, seed=4) * 1000) / 1000).astype(np.float32)
    patient = old.get_model("clinical", "Patient").objects.create(pseudonym="PT-OLD", age=70, sex="F")
    record = old.get_model("clinical", "EcgRecord").objects.create(
        patient=patient, sex_at_ecg="F", uploaded_by_id=clinician.pk, source_format="wfdb", upload_sha256="0" * 64,
        fs=500, n_samples=5000, signal=signal.tobytes())
    lead_maps = np.round(np.random.default_rng(1).random((12, 1000)), 2)
    json_evidence = {"superclass:MI": {"gradcam": [0.5] * 1000, "lead_relevance": [1 / 12] * 12,
                                       "lead_maps": lead_maps.tolist()}}
    old.get_model("clinical", "Prediction").objects.create(
        record=record, model_version="old", superclass={}, statements={}, spread={}, embedding=[],
        explanations=json_evidence, inference_ms=1.0)

    executor = MigrationExecutor(connection)
    executor.migrate([("clinical", "0017_compact_signal_and_evidence")])
    new = executor.loader.project_state([("clinical", "0017_compact_signal_and_evidence")]).apps
    row = new.get_model("clinical", "EcgRecord").objects.get(pk=record.pk)
    assert row.signal_encoding == compact.INT16_DELTA_ZLIB and len(bytes(row.signal)) < signal.size * 2
    assert np.array_equal(compact.signal_decode(row.signal_encoding, row.signal, 5000), signal)
    pred = new.get_model("clinical", "Prediction").objects.get(record_id=record.pk)
    ex = compact.evidence_decode(pred.explanations, pred.evidence, "superclass:MI")
    assert np.abs(ex.lead_maps - lead_maps).max() <= 0.5 / 255 + 1e-6

    executor = MigrationExecutor(connection)
    executor.migrate([("clinical", "0016_import_evidence_option_uploader_sha256")])
    back = executor.loader.project_state([("clinical", "0016_import_evidence_option_uploader_sha256")]).apps
    raw = bytes(back.get_model("clinical", "EcgRecord").objects.get(pk=record.pk).signal)
    assert np.array_equal(np.frombuffer(raw, dtype=np.float32).reshape(12, 5000), signal)
    explanations = back.get_model("clinical", "Prediction").objects.get(record_id=record.pk).explanations
    assert np.allclose(explanations["superclass:MI"]["lead_maps"], lead_maps, atol=0.01)
    MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
