from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from clinical.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits non-zero at the first event that does not match."

    def handle(self, *args, **options):
        ok, _, message = audit_verify()
        if not ok:
            raise CommandError(message)
        self.stdout.write(message)
