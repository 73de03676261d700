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


def connect() -> None:
    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
