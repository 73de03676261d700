"""The four roles, as Django groups, created idempotently."""
from __future__ import annotations

from django.contrib.auth.models import Group

ROLES = ("clinician", "reviewer", "compliance", "integrator")


def roles_ensure() -> list[Group]:
    return [Group.objects.get_or_create(name=name)[0] for name in ROLES]
