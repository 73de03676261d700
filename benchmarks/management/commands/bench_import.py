"""Bulk import rate: `manage.py bench_import PTBXL_DIR --n 2000` imports N PTB-XL records (records100, through
ecg_import's service, analysed inline, evidence off) into a throwaway database, then runs the same import again,
which must import none. Prints ECG/s for each run.

The throwaway database is Django's test database (PostgreSQL with DATABASE_URL, else an SQLite file), so the
app's own data and its append-only audit trail are untouched.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from benchmarks.stack import throwaway_database


class Command(BaseCommand):
    help = "Benchmark ecg_import on PTB-XL: ECG/s imported (inline analysis, no evidence), and a re-run's count."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="an unpacked PTB-XL layout (../shared/ptbxl/unpack.py DEST)")
        parser.add_argument("--n", type=int, default=2000)
        parser.add_argument("--queued", action="store_true",
                            help="queue the jobs instead of analysing inline (measures parse + store only)")

    def handle(self, *args, path: Path, n: int, queued: bool, **options):
        if not (path / "ptbxl_database.csv").is_file():
            raise CommandError(f"{path} is not an unpacked PTB-XL layout (no ptbxl_database.csv)")
        if connection.vendor == "sqlite":  # a file, as the app's own database is, not an in-memory one
            tmp = Path(tempfile.mkdtemp(prefix="ecgapp-bench-import-"))
            settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = str(tmp / "ecgapp.sqlite3")
        with throwaway_database():
            self._run(path, n, inline=not queued)

    def _run(self, path: Path, n: int, inline: bool) -> None:
        from celery import current_app
        from django.contrib.auth.models import Group, User

        from clinical.imports import Outcome, ecg_import
        from clinical.roles import roles_ensure
        from clinical.services import get_ensemble

        roles_ensure()
        actor = User.objects.create_user("bench-import", password="bench-password-1")
        actor.groups.add(Group.objects.get(name="clinician"))
        get_ensemble()  # loaded once, as a worker loads it before taking work
        if not inline:  # no worker is running: keep the messages out of any real queue
            current_app.conf.task_always_eager, current_app.conf.task_store_eager_result = False, False
            current_app.conf.broker_url = "memory://"
        for label in ("first run", "re-run"):
            s = ecg_import(actor=actor, path=path, inline=inline, limit=n)
            c = s.counts
            self.stdout.write(
                f"ecg_import {label}, {n} PTB-XL records100 ({connection.vendor}, "
                f"{'inline analysis' if inline else 'queued'}, evidence off): {c[Outcome.IMPORTED]} imported, "
                f"{c[Outcome.SKIPPED]} skipped, {c[Outcome.REFUSED]} refused, {c[Outcome.ANALYSIS_FAILED]} analysis "
                f"failed in {s.seconds:.1f} s: {s.ecg_per_s:.1f} ECG/s imported, "
                f"{n / s.seconds:.1f} files/s examined")
            for r in s.problems[:10]:
                self.stdout.write(f"  {r.outcome}: {r.key}: {r.message[:160]}")
