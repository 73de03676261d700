"""``manage.py backfill_measurements``: this system's measurements for ECGs stored before measurements existed.

Each ECG whose ``measurements`` are empty is measured on the window its result analysed (the stored signal, the
stored ``window_start_s``), exactly as an upload is measured now (clinical.measurements.ecg_measurements), and the
values are stored with ``backfilled_at``: the page and the API then show them. The result itself is not changed —
its findings and actions were made (and perhaps reviewed) without these measurements, so no criterion statement is
added to it; the page says so, and a re-analysis gives a result that uses them. Each ECG measured is audited
(``ecg.measurements_backfill``). Re-running measures nothing twice.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from clinical import measurements as ecg_measures
from clinical.audit import AuditAction, audit_log
from clinical.models import EcgRecord
from mlcore.window import crop


class Command(BaseCommand):
    help = "Measure the ECGs stored before measurements existed (their results stay as they were)."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=None, help="measure at most this many ECGs")

    def handle(self, *args, limit: int | None, **options):
        pending = EcgRecord.objects.filter(measurements={}).order_by("pk").values_list("pk", flat=True)
        ids = list(pending[:limit] if limit else pending)
        done = 0
        for n, pk in enumerate(ids, 1):
            with transaction.atomic():
                record = EcgRecord.objects.select_for_update().get(pk=pk)
                if record.measurements:  # measured meanwhile (another run)
                    continue
                window = crop(record.signal_array(), record.fs, record.window_start_s)
                m = ecg_measures.ecg_measurements(window, record.fs)
                m["backfilled_at"] = timezone.now().isoformat()
                record.measurements = m
                record.save(update_fields=["measurements"])
                audit_log(actor=None, action=AuditAction.ECG_MEASUREMENTS_BACKFILL, object_type="EcgRecord",
                          object_id=record.public_id,
                          details={"window_start_s": record.window_start_s, "version": m.get("version"),
                                   **{k: m.get(k) for k in ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms")}})
                done += 1
            if n % 50 == 0 or n == len(ids):
                self.stdout.write(f"measured {n}/{len(ids)}")
        self.stdout.write(self.style.SUCCESS(f"{done} ECGs measured; {len(ids) - done} skipped"))
