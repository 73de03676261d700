"""The roles, as Django groups with explicit permissions, created idempotently (`manage.py setup_roles`)."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission

# codename -> what it lets a person do; all are defined on EcgRecord's Meta.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "clinician": ("upload_ecg",),
    "reviewer": ("upload_ecg", "view_all_ecgs", "acknowledge_result"),
    "compliance": ("view_all_ecgs", "view_audit", "view_monitoring"),
    "integrator": ("use_api",),
    "admin": ("upload_ecg", "view_all_ecgs", "acknowledge_result", "view_audit", "view_monitoring", "use_api"),
}
ROLES = tuple(ROLE_PERMISSIONS)


def roles_ensure() -> list[Group]:
    """Create the groups and set exactly their permissions (extra ones granted by hand are removed)."""
    groups = []
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = list(Permission.objects.filter(content_type__app_label="clinical", codename__in=codenames))
        if len(perms) != len(codenames):
            raise RuntimeError(f"missing permissions for {name}: run migrate first")
        group.permissions.set(perms)
        groups.append(group)
    return groups
