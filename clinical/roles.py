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
# What the admin role may do to accounts in the Django admin (app_label "auth"): list, create and edit users
# (roles, active, password) and read the roles. Not: delete users (the audit trail refers to them), edit the
# roles' permissions (they are defined here), or grant superuser and per-user permissions (clinical.admin).
ROLE_ACCOUNT_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "admin": ("view_user", "add_user", "change_user", "view_group"),
}
# Site calibration (monitoring.CalibrationVersion): compliance reviews a refit and decides whether it goes live.
# Model versions (monitoring.registry): compliance imports, promotes with sign-off and rolls back.
ROLE_MONITORING_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "compliance": ("manage_calibration", "manage_models"),
    "admin": ("manage_calibration", "manage_models"),
}


def role_permission_names(name: str) -> list[str]:
    """The role's permissions as `app_label.codename`, for display."""
    return ([f"clinical.{c}" for c in ROLE_PERMISSIONS[name]]
            + [f"auth.{c}" for c in ROLE_ACCOUNT_PERMISSIONS.get(name, ())]
            + [f"monitoring.{c}" for c in ROLE_MONITORING_PERMISSIONS.get(name, ())])


def roles_ensure() -> list[Group]:
    """Create the groups and set exactly their permissions (extra ones granted by hand are removed)."""
    groups = []
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        account = ROLE_ACCOUNT_PERMISSIONS.get(name, ())
        perms = list(Permission.objects.filter(content_type__app_label="clinical", codename__in=codenames))
        perms += Permission.objects.filter(content_type__app_label="auth", codename__in=account)
        monitoring = ROLE_MONITORING_PERMISSIONS.get(name, ())
        perms += Permission.objects.filter(content_type__app_label="monitoring", codename__in=monitoring)
        if len(perms) != len(codenames) + len(account) + len(monitoring):
            raise RuntimeError(f"missing permissions for {name}: run migrate first")
        group.permissions.set(perms)
        groups.append(group)
    return groups
