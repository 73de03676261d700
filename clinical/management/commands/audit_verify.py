from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from clinical.audit import NO_CHECKPOINTS, audit_verify


class Command(BaseCommand):
    help = ("Verify the audit trail's hash chain and its signed checkpoints; exits non-zero at the first problem "
            "(an event that does not match, the newest events deleted, a re-hashed chain, a forged checkpoint).")

    def handle(self, *args, **options):
        ok, _, message = audit_verify()
        if not ok:
            raise CommandError(message)
        self.stdout.write(self.style.WARNING(message) if NO_CHECKPOINTS in message else message)
