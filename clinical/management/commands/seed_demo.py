from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, transaction

from clinical import demo
from clinical.models import InferenceJob, Patient
from clinical.roles import roles_ensure
from clinical.services import ecg_submit

DEMO_PASSWORD = "demo-password-1"
DEMO_USERS = (("clinician", "clinician"), ("reviewer", "reviewer"), ("compliance", "compliance"),
              ("admin", "admin"))


class Command(BaseCommand):
    help = ("Demo mode only: demo accounts (one per role), synthetic demo ECGs queued for analysis (the first drift "
            "and fairness reports follow once they are analysed), example upload files. Adds only what is missing.")

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=demo.POPULATION_SIZE,
                            help=f"synthetic demo ECGs in all, the six showcase cases first "
                                 f"(default {demo.POPULATION_SIZE}, enough for the drift and fairness reports)")
        parser.add_argument("--reset", action="store_true",
                            help="first delete the embedded demo's database, queued messages and report files "
                                 "(stop the server first), then migrate and seed afresh")

    def handle(self, *args, count: int, reset: bool, **options):
        if not settings.DEMO_MODE:
            raise CommandError("seed_demo runs only in demo mode (ECGAPP_DEMO=1); it creates known passwords.")
        if reset:
            self._reset()
        roles_ensure()
        for username, group in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(DEMO_PASSWORD)
                user.email = f"{username}@demo.invalid"
                user.is_staff = group in ("compliance", "admin")
                user.save()
            user.groups.add(Group.objects.get(name=group))
        clinician = User.objects.get(username="clinician")
        ecgs = demo.population(count)
        seen = set(Patient.objects.filter(pseudonym__in=[e.pseudonym for e in ecgs]).values_list("pseudonym",
                                                                                                  flat=True))
        job_ids = []
        for ecg in ecgs:  # in order, so the showcase cases are queued (and analysed) first
            if ecg.pseudonym in seen:
                continue
            record = ecg_submit(actor=clinician, pseudonym=ecg.pseudonym, age=ecg.age, sex=ecg.sex,
                                files={"json": (ecg.file_name, demo.as_json(ecg.signal(500), 500))}, fs=None)
            job_ids.append(InferenceJob.objects.values_list("pk", flat=True).get(record=record))
        if job_ids:
            from monitoring.tasks import reports_after_jobs

            transaction.on_commit(lambda: reports_after_jobs.delay(job_ids))
        out = Path(settings.ECG_DATA_DIR) / "demo-uploads"
        out.mkdir(parents=True, exist_ok=True)
        sample = demo.synthesize(demo.CASES[2], fs=500, seed=99)
        demo.write_wfdb(sample, 500, "demo_st_elevation_500hz", str(out))
        (out / "demo_normal_250hz.csv").write_bytes(demo.as_csv(demo.synthesize(demo.CASES[0], fs=250, seed=98)))
        api_example = json.loads(demo.as_json(demo.synthesize(demo.CASES[1], fs=500, seed=97), 500))
        api_example["patient"] = {"id": "PT-0042", "age": 63, "sex": "F"}
        (out / "example-api.json").write_text(json.dumps(api_example))
        self.stdout.write(f"demo accounts: {', '.join(u for u, _ in DEMO_USERS)} / password {DEMO_PASSWORD}")
        self.stdout.write(f"synthetic demo ECGs queued: {len(job_ids)} (of {len(ecgs)}); the first drift and "
                          f"fairness reports run when they are analysed; files to upload yourself: {out}")

    def _reset(self) -> None:
        """Delete the embedded demo's state: its SQLite file, queued messages, report files, upload examples.
        The audit trail is append-only (a trigger refuses deletes), so the database file goes, not its rows."""
        db = settings.DATABASES["default"]
        data_dir = Path(settings.ECG_DATA_DIR).resolve()
        name = Path(str(db["NAME"])).resolve()
        if db["ENGINE"] != "django.db.backends.sqlite3" or data_dir not in name.parents:
            raise CommandError(f"--reset deletes only the embedded demo's SQLite database under {data_dir}; "
                               "this database is not one, so nothing was deleted.")
        connections.close_all()
        for suffix in ("", "-wal", "-shm", "-journal"):
            name.with_name(name.name + suffix).unlink(missing_ok=True)
        # Messages for jobs of the old database would otherwise run against the new one's rows of the same id.
        for folder in ("out", "processed"):
            for message in (data_dir / "broker" / folder).glob("*"):
                message.unlink()
        for folder in ("media", "demo-uploads"):
            shutil.rmtree(data_dir / folder, ignore_errors=True)
        for schedule in data_dir.glob("celerybeat-schedule*"):
            schedule.unlink()
        # The audit checkpoints vouch for the old database's chain; kept, audit_verify would report it deleted.
        checkpoints = Path(settings.ECG_AUDIT_CHECKPOINTS).resolve()
        if data_dir in checkpoints.parents:
            checkpoints.unlink(missing_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(f"demo reset: removed {name} and the demo's queued messages and files")
