"""Login auditing and throttling of repeated failed logins."""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.utils import timezone

from clinical.audit import audit_log
from clinical.models import AuditEvent

LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)


def failed_logins(username: str) -> int:
    since = timezone.now() - LOCKOUT_WINDOW
    return AuditEvent.objects.filter(action="auth.login_failed", at__gte=since, details__username=username).count()


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses a username after LOCKOUT_FAILURES failed attempts within LOCKOUT_WINDOW, before checking it."""

    def clean(self):
        username = (self.data.get("username") or "").strip()
        if username and failed_logins(username) >= LOCKOUT_FAILURES:
            raise forms.ValidationError(
                f"Too many failed attempts for this account. Try again in {LOCKOUT_WINDOW.seconds // 60} minutes "
                "or ask an administrator.", code="locked")
        return super().clean()


def _logged_in(sender, request, user, **kwargs):
    audit_log(actor=user, action="auth.login", object_type="User", object_id=user.pk)


def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        audit_log(actor=user, action="auth.logout", object_type="User", object_id=user.pk)


def _login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    audit_log(actor=None, action="auth.login_failed", object_type="User", object_id=username,
              details={"username": username})


def _groups_changed(sender, instance, action, pk_set, reverse, **kwargs):
    """Role changes (a user added to or removed from a group), from the admin or a script."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    from django.contrib.auth.models import Group, User

    if reverse:  # group.user_set.add(user)
        users = list(User.objects.filter(pk__in=pk_set or [])) if pk_set else []
        groups = [instance.name]
    else:
        users = [instance]
        groups = sorted(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
    for user in users:
        audit_log(actor=None, action="role.change", object_type="User", object_id=user.pk,
                  details={"user": user.username, "change": action.removeprefix("post_"), "groups": groups})


def _permissions_changed(sender, instance, action, pk_set, reverse, **kwargs):
    if action in ("post_add", "post_remove", "post_clear") and not reverse:
        audit_log(actor=None, action="role.permissions_change", object_type="Group", object_id=instance.pk,
                  details={"group": getattr(instance, "name", ""), "change": action.removeprefix("post_"),
                           "permission_ids": sorted(pk_set or [])})


def connect() -> None:
    from django.contrib.auth.models import Group, User
    from django.db.models.signals import m2m_changed

    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="audit-role-change")
    m2m_changed.connect(_permissions_changed, sender=Group.permissions.through, dispatch_uid="audit-perm-change")
    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
