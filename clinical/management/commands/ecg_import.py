"""Import an ECG archive: `manage.py ecg_import PATH --actor USERNAME [--manifest file.csv] [--inline]`.

PATH is a folder (any depth: a MUSE or Philips export directory, a PTB-XL copy, a folder of WFDB records) or a
zip. Each ECG goes through the upload service and its audit (clinical.imports). Re-running skips what is in.

Inference: by default each imported ECG's job is queued to the Celery workers, as an upload's is (production: the
import is as fast as parsing and storing, the workers analyse at their own pace, and more workers go faster).
``--inline`` analyses each ECG in this process before the next (no worker needed: tests, a small archive, a
measured rate). Evidence (Grad-CAM) is not computed unless ``--evidence``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from clinical.errors import ApplicationError
from clinical.imports import ImportResult, Outcome, ecg_import


class Command(BaseCommand):
    help = "Import a folder or zip of ECGs (any format the upload reads) through the upload service; resumable."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="a folder, a zip, or an ECG system's export directory")
        parser.add_argument("--actor", required=True, help="the account the ECGs are uploaded as (may upload ECGs)")
        parser.add_argument("--manifest", type=Path, default=None,
                            help="CSV with columns file, patient, age, sex, or PTB-XL's ptbxl_database.csv (found "
                                 "by itself in a PTB-XL folder)")
        parser.add_argument("--ptbxl-rate", type=int, choices=(100, 500), default=100,
                            help="with a PTB-XL manifest: import records100 (filename_lr) or records500")
        parser.add_argument("--fs", type=float, default=None, help="sampling rate of CSV/text files that omit it")
        parser.add_argument("--limit", type=int, default=None, help="import only the first N ECGs")
        parser.add_argument("--inline", action="store_true",
                            help="analyse each ECG in this process instead of queueing it to the workers")
        parser.add_argument("--evidence", action="store_true", help="also compute Grad-CAM evidence (slower)")
        parser.add_argument("--strict", action="store_true",
                            help="exit with status 1 if any file was refused or its analysis failed")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")

    def handle(self, *args, path: Path, actor: str, manifest: Path | None, ptbxl_rate: int, fs: float | None,
               limit: int | None, inline: bool, evidence: bool, strict: bool, no_progress: bool, **options):
        user = get_user_model().objects.filter(username=actor, is_active=True).first()
        if user is None or not user.has_perm("clinical.upload_ecg"):
            raise CommandError(f"{actor!r} is not an active account that may upload ECGs.")
        if not path.exists():
            raise CommandError(f"{path} does not exist.")

        def progress(keys, total):
            self._bar = tqdm(keys, total=total, unit="ECG", disable=no_progress, file=sys.stderr)
            return self._bar

        def heard(result: ImportResult) -> None:
            # Said as it happens above the bar, and again in the list at the end.
            if not no_progress and result.outcome in (Outcome.REFUSED, Outcome.ANALYSIS_FAILED):
                self._bar.write(f"{result.outcome}: {result.key}: {result.message}", file=sys.stderr)

        try:
            summary = ecg_import(actor=user, path=path, manifest_path=manifest, ptbxl_rate=ptbxl_rate, inline=inline,
                                 evidence=evidence, fs=fs, limit=limit, progress=progress, on_result=heard)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        c = summary.counts
        self.stdout.write(
            f"{c[Outcome.IMPORTED]} imported, {c[Outcome.SKIPPED]} skipped (already in), {c[Outcome.REFUSED]} "
            f"refused, {c[Outcome.ANALYSIS_FAILED]} analysis failed in {summary.seconds:.1f} s: "
            f"{summary.ecg_per_s:.1f} ECG/s ({'analysed inline' if inline else 'queued to the workers'}, "
            f"evidence {'on' if evidence else 'off'})")
        for r in summary.problems:
            self.stdout.write(f"  {r.outcome}: {r.key}: {r.message}")
        if summary.missing:
            self.stdout.write(f"{len(summary.missing)} listed in the manifest are not in the archive (not counted "
                              f"as refused), e.g. {', '.join(summary.missing[:5])}")
        if strict and summary.problems:
            raise CommandError(f"{len(summary.problems)} file(s) not imported or not analysed (--strict)",
                               returncode=1)
