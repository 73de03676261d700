"""How long audit_verify takes on a long history, and how fast audit events are written (throwaway database)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from benchmarks.stack import throwaway_database
from clinical.audit import GENESIS, AuditAction, audit_checkpoint, audit_log, audit_verify, chain_hash
from clinical.models import AuditEvent


class Command(BaseCommand):
    help = "Benchmark audit_verify over N events and the audit write rate."

    def add_arguments(self, parser):
        parser.add_argument("--n", type=int, default=10_000)
        parser.add_argument("--writes", type=int, default=500)

    def handle(self, *args, n: int, writes: int, **options):
        # Checkpoints of its own: the app's would name events the throwaway database lacks.
        checkpoints = Path(tempfile.mkdtemp(prefix="ecgapp-bench-audit-")) / "audit-checkpoints.jsonl"
        with throwaway_database(), override_settings(ECG_AUDIT_CHECKPOINTS=checkpoints):
            t0 = time.perf_counter()
            for i in range(writes):
                audit_log(actor=None, action=AuditAction.BENCH_WRITE, object_type="T", object_id=i, details={"i": i})
            write_s = time.perf_counter() - t0
            prev = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or GENESIS
            rows, now = [], timezone.now()
            for i in range(n - writes):
                e = AuditEvent(at=now, actor_label="system", action=AuditAction.BENCH_BULK,
                               object_type="T", object_id=str(i),
                               details={"i": i}, prev_hash=prev)
                e.hash = prev = chain_hash(prev, e)
                rows.append(e)
            AuditEvent.objects.bulk_create(rows, batch_size=2000)
            audit_checkpoint()
            t0 = time.perf_counter()
            ok, count, message = audit_verify()
            verify_s = time.perf_counter() - t0
        self.stdout.write(f"audit ({connection.vendor}): {writes} audited writes at {writes / write_s:.0f}/s; "
                          f"audit_verify over {count} events: {verify_s:.2f} s ({'ok' if ok else message})")
