from __future__ import annotations

from django.core.management.base import BaseCommand

from clinical.roles import roles_ensure


class Command(BaseCommand):
    help = "Create the clinician, reviewer, compliance and integrator groups if they are missing."

    def handle(self, *args, **options):
        groups = roles_ensure()
        self.stdout.write(f"roles: {', '.join(g.name for g in groups)}")
