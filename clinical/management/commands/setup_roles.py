from __future__ import annotations

from django.core.management.base import BaseCommand

from clinical.roles import role_permission_names, roles_ensure


class Command(BaseCommand):
    help = "Create the clinician, reviewer, compliance, integrator and admin groups with their permissions."

    def handle(self, *args, **options):
        for group in roles_ensure():
            self.stdout.write(f"{group.name}: {', '.join(role_permission_names(group.name))}")
