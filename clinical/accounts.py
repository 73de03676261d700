"""Staff accounts as administrators manage them (Django admin): every change writes its audit event.

Role changes (a user added to or removed from a group) are audited once, by the m2m signal in clinical.auth;
these functions audit everything else about an account, inside the admin's transaction.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from clinical.audit import AuditAction, audit_log
from clinical.models import AuditEvent

# Fields whose change is audited as USER_CHANGED (is_active has its own actions; groups their signal).
AUDITED_FIELDS = ("username", "first_name", "last_name", "email", "is_staff", "is_superuser")
ADMIN_ROLE = "admin"


def user_state(user: User) -> dict[str, Any]:
    """What an audit event compares: the audited fields and is_active, as stored."""
    return {f: getattr(user, f) for f in (*AUDITED_FIELDS, "is_active")}


def user_changes_audit(*, actor: User, user: User, before: dict[str, Any] | None,
                       reason: str = "") -> list[AuditEvent]:
    """Audit a saved account against its state `before` the save (None: it was just created)."""
    details = {"user": user.username, **({"reason": reason} if reason else {})}
    if before is None:
        return [audit_log(actor=actor, action=AuditAction.USER_CREATE, object_type="User", object_id=user.pk,
                          details={**details, "is_active": user.is_active, "is_staff": user.is_staff,
                                   "is_superuser": user.is_superuser,
                                   "usable_password": user.has_usable_password()})]
    after = user_state(user)
    events = []
    if after["is_active"] != before["is_active"]:
        action = AuditAction.USER_ACTIVATE if after["is_active"] else AuditAction.USER_DEACTIVATE
        events.append(audit_log(actor=actor, action=action, object_type="User", object_id=user.pk, details=details))
    changed = {f: [before[f], after[f]] for f in AUDITED_FIELDS if before[f] != after[f]}
    if changed:
        events.append(audit_log(actor=actor, action=AuditAction.USER_CHANGE, object_type="User", object_id=user.pk,
                                details={**details, "fields": changed}))
    return events


def user_password_set_audit(*, actor: User, user: User) -> AuditEvent:
    """An administrator set (or disabled) another account's password; the hash itself is never logged."""
    return audit_log(actor=actor, action=AuditAction.USER_PASSWORD_SET, object_type="User", object_id=user.pk,
                     details={"user": user.username, "usable_password": user.has_usable_password()})


def user_active_set(*, actor: User, user: User, active: bool) -> bool:
    """Activate or deactivate an account; returns whether it changed."""
    if user.is_active == active:
        return False
    with transaction.atomic():
        before = user_state(user)
        user.is_active = active
        user.save(update_fields=["is_active"])
        user_changes_audit(actor=actor, user=user, before=before)
    return True


def user_admin_role_staff_ensure(*, actor: User, user: User) -> bool:
    """The admin role works in the Django admin, which needs is_staff: set it for admin-role users."""
    if user.is_staff or not user.groups.filter(name=ADMIN_ROLE).exists():
        return False
    with transaction.atomic():
        before = user_state(user)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        user_changes_audit(actor=actor, user=user, before=before, reason="admin role")
    return True
