from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from clinical.audit import audit_checkpoint


class Command(BaseCommand):
    help = ("Append a signed checkpoint of the audit chain's head (last event, its hash, the count) to "
            "ECGAPP_AUDIT_CHECKPOINTS; audit_verify then sees the newest events deleted or the chain re-hashed.")

    def handle(self, *args, **options):
        cp = audit_checkpoint()
        self.stdout.write(f"checkpoint {cp.seq}: event {cp.event_id}, {cp.count} events, "
                          f"written to {settings.ECG_AUDIT_CHECKPOINTS}")
