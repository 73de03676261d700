from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from clinical import demo
from clinical.models import Patient
from clinical.roles import roles_ensure
from clinical.services import ecg_submit

DEMO_PASSWORD = "demo-password-1"
DEMO_USERS = (("clinician", "clinician"), ("reviewer", "reviewer"), ("compliance", "compliance"),
              ("admin", "admin"))


class Command(BaseCommand):
    help = "Demo mode only: demo accounts (one per role), demo ECGs queued for analysis, example upload files."

    def handle(self, *args, **options):
        if not settings.DEMO_MODE:
            raise CommandError("seed_demo runs only in demo mode (ECGAPP_DEMO=1); it creates known passwords.")
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
        added = 0
        for i, case in enumerate(demo.CASES):
            if Patient.objects.filter(pseudonym=case.pseudonym).exists():
                continue
            signal = demo.synthesize(case, fs=500, seed=i)
            ecg_submit(actor=clinician, pseudonym=case.pseudonym, age=case.age, sex=case.sex,
                       files={"json": (f"{case.pseudonym}.json", demo.as_json(signal, 500))}, fs=None)
            added += 1
        out = Path(settings.ENV.data_dir) / "demo-uploads"
        out.mkdir(parents=True, exist_ok=True)
        sample = demo.synthesize(demo.CASES[2], fs=500, seed=99)
        demo.write_wfdb(sample, 500, "demo_st_elevation_500hz", str(out))
        (out / "demo_normal_250hz.csv").write_bytes(demo.as_csv(demo.synthesize(demo.CASES[0], fs=250, seed=98)))
        api_example = json.loads(demo.as_json(demo.synthesize(demo.CASES[1], fs=500, seed=97), 500))
        api_example["patient"] = {"id": "PT-0042", "age": 63, "sex": "F"}
        (out / "example-api.json").write_text(json.dumps(api_example))
        self.stdout.write(f"demo accounts: {', '.join(u for u, _ in DEMO_USERS)} / password {DEMO_PASSWORD}")
        self.stdout.write(f"demo ECGs queued: {added}; files to upload yourself: {out}")
