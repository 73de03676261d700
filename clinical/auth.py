"""Login auditing, throttling of failed logins, and the lifetime of a signed-in session.

Throttling follows django-axes and OWASP's advice against lockouts: failures are counted per (username, client
address) pair, per address and per username, from the audit trail (so every web process sees the same counts),
and each count buys an exponentially growing wait, never a lock. A stranger's failures from another address
therefore never keep the real user out; see `login_throttle_for` for the three rules.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models import Count, Max
from django.utils import timezone

from clinical.audit import AuditAction, audit_log, current_ip
from clinical.models import AuditEvent

# One (username, address) pair: 5 free failures, then 1, 2, 4, 8, 15, 15 ... minutes between attempts. Its
# count starts again after a successful login from that pair, or after a quiet day.
PAIR_FREE_FAILURES = 5
PAIR_WINDOW = timedelta(hours=24)
# One address failing for many usernames (password spraying) waits as a whole, 1, 2, 4 ... 15 minutes.
ADDRESS_FREE_USERNAMES = 10
ADDRESS_WINDOW = timedelta(hours=1)
# One username failing from many addresses (a botnet): addresses that never logged in as it wait a short while
# between attempts; addresses it logged in from lately (its own workstations) do not.
USERNAME_FREE_FAILURES = 20
USERNAME_MIN_ADDRESSES = 5
USERNAME_WINDOW = timedelta(hours=1)
USERNAME_DELAY = timedelta(minutes=1)
KNOWN_ADDRESS_WINDOW = timedelta(days=30)
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(minutes=15)

SESSION_STARTED = "ecgapp_session_started"
SESSION_SEEN = "ecgapp_session_seen"
SESSION_TOUCH_SECONDS = 60


def username_key(username: str) -> str:
    """The name failures are counted under: NFKC (as Django's UsernameField normalises before it authenticates),
    case-folded and NFKC again, so 'ｖictim1', 'Victim1' and 'victim1' share one count."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username.strip()).casefold()).strip()[:150]


def printable(text: str) -> str:
    """`text` with control and other invisible characters escaped (\\x00, \\u200b): storable in PostgreSQL's
    varchar and jsonb, which cannot hold NUL, and readable in the audit trail."""
    return "".join(ch if unicodedata.category(ch)[0] != "C" else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


@dataclass(frozen=True)
class LoginThrottle:
    scope: str  # "pair", "address" or "username"
    until: datetime

    @property
    def wait_seconds(self) -> int:
        return max(1, int((self.until - timezone.now()).total_seconds() + 0.999))


def _backoff(excess: int) -> timedelta:
    """BACKOFF_FIRST doubled for each failure past the free ones (excess 0: the first wait), at most BACKOFF_MAX."""
    return min(BACKOFF_FIRST * 2 ** min(excess, 16), BACKOFF_MAX)


def login_throttle_for(*, key: str, ip: str | None) -> LoginThrottle | None:
    """The wait in force for an attempt to log in as `key` from `ip`, or None when it may try now.

    - pair: after PAIR_FREE_FAILURES failures of this username from this address, each further failure doubles
      the wait. Only this pair waits: the real user elsewhere is unaffected.
    - address: an address that failed for ADDRESS_FREE_USERNAMES distinct usernames within ADDRESS_WINDOW waits for
      every username, doubling with each further username.
    - username: a username that failed USERNAME_FREE_FAILURES times from at least USERNAME_MIN_ADDRESSES addresses
      within USERNAME_WINDOW makes addresses it has not logged in from within KNOWN_ADDRESS_WINDOW wait
      USERNAME_DELAY after its last failure; the user's own (known) addresses never wait for this rule.
    Counting names the same way for accounts that exist and accounts that do not, so a wait reveals neither.
    """
    now = timezone.now()
    failures = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED)
    waits: list[LoginThrottle] = []

    if ip:
        last_success = (AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN, ip=ip, details__username_key=key,
                                                  at__gte=now - PAIR_WINDOW)
                        .aggregate(at=Max("at"))["at"])
        pair = failures.filter(ip=ip, details__username_key=key, at__gte=last_success or now - PAIR_WINDOW)
        stats = pair.aggregate(n=Count("id"), last=Max("at"))
        if stats["n"] >= PAIR_FREE_FAILURES:
            waits.append(LoginThrottle("pair", stats["last"] + _backoff(stats["n"] - PAIR_FREE_FAILURES)))

        stats = failures.filter(ip=ip, at__gte=now - ADDRESS_WINDOW).aggregate(
            n=Count("details__username_key", distinct=True), last=Max("at"))
        if stats["n"] >= ADDRESS_FREE_USERNAMES:
            waits.append(LoginThrottle("address", stats["last"] + _backoff(stats["n"] - ADDRESS_FREE_USERNAMES)))

    stats = failures.filter(details__username_key=key, at__gte=now - USERNAME_WINDOW).aggregate(
        n=Count("id"), addresses=Count("ip", distinct=True), last=Max("at"))
    if (stats["n"] >= USERNAME_FREE_FAILURES and stats["addresses"] >= USERNAME_MIN_ADDRESSES
            and stats["last"] + USERNAME_DELAY > now):
        known = ip and AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN, ip=ip, details__username_key=key,
                                                 at__gte=now - KNOWN_ADDRESS_WINDOW).exists()
        if not known:
            waits.append(LoginThrottle("username", stats["last"] + USERNAME_DELAY))

    waits = [w for w in waits if w.until > now]
    return max(waits, key=lambda w: w.until) if waits else None


def login_failure_audit(*, username: str, typed: str | None = None) -> AuditEvent:
    """Record a failed login for `username` (as the form normalised it; `typed` when the person typed otherwise)."""
    name = printable(username)[:150]
    details = {"username": name, "username_key": username_key(name)}
    if typed is not None and typed != username:
        details["typed"] = printable(typed)[:150]
    return audit_log(actor=None, action=AuditAction.AUTH_LOGIN_FAILED,
                     object_type="User", object_id=name[:64], details=details)


class ThrottledAuthenticationForm(AuthenticationForm):
    """Checks `login_throttle_for` before the password, and counts every failed attempt, malformed ones too."""

    def clean(self):
        typed = str(self.data.get("username") or "")
        if not typed.strip():
            return super().clean()  # "This field is required", not an attempt
        username = self.cleaned_data.get("username")  # stripped and NFKC-normalised, None if it was invalid
        # A malformed name or password (a NUL byte, too long) is a failed attempt like any other, with the same
        # message, counted under its escaped form.
        malformed = username is None or (self.data.get("password") and "password" in self.errors)
        name = printable(typed[:150]) if username is None else username
        throttle = login_throttle_for(key=username_key(name), ip=current_ip.get())
        if throttle:
            audit_log(actor=None, action=AuditAction.AUTH_LOGIN_THROTTLED,
                      object_type="User", object_id=printable(name)[:64],
                      details={"username": printable(name)[:150], "username_key": username_key(name),
                               "scope": throttle.scope, "wait_seconds": throttle.wait_seconds})
            minutes = -(-throttle.wait_seconds // 60)
            raise forms.ValidationError(
                f"Too many failed attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
                "or ask an administrator.", code="throttled")
        if malformed:
            login_failure_audit(username=name, typed=typed)
            raise self.get_invalid_login_error()
        return super().clean()


class SessionLifetimeMiddleware:
    """Ends a signed-in session after SESSION_COOKIE_AGE idle (sliding) or ECG_SESSION_MAX_AGE in all.

    The idle limit is the session's own expiry: touching the session at most once a minute re-saves it with a new
    expiry (fewer writes than SESSION_SAVE_EVERY_REQUEST), so an idle session expires in the store and the browser.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(timezone.now().timestamp())
            started = request.session.setdefault(SESSION_STARTED, now)
            if now - started > settings.ECG_SESSION_MAX_AGE:
                request.session_end_reason = "max_age"
                logout(request)
            elif now - request.session.get(SESSION_SEEN, 0) >= SESSION_TOUCH_SECONDS:
                request.session[SESSION_SEEN] = now
        return self.get_response(request)


def _logged_in(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_STARTED] = int(timezone.now().timestamp())
    audit_log(actor=user, action=AuditAction.AUTH_LOGIN, object_type="User", object_id=user.pk,
              details={"username_key": username_key(user.get_username())})


def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        reason = getattr(request, "session_end_reason", None)
        audit_log(actor=user, action=AuditAction.AUTH_LOGOUT, object_type="User", object_id=user.pk,
                  details={"reason": reason} if reason else None)


def _login_failed(sender, credentials, request=None, **kwargs):
    typed = request.POST.get("username") if getattr(request, "method", None) == "POST" else None
    login_failure_audit(username=str(credentials.get("username", "")), typed=typed)


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
        audit_log(actor=None, action=AuditAction.ROLE_CHANGE, object_type="User", object_id=user.pk,
                  details={"user": user.username, "change": action.removeprefix("post_"), "groups": groups})


PERMISSIONS_CHANGED_UID = "audit-perm-change"  # the audit's receiver of a group's permission changes


def _permissions_changed(sender, instance, action, pk_set, reverse, **kwargs):
    if action in ("post_add", "post_remove", "post_clear") and not reverse:
        audit_log(actor=None, action=AuditAction.ROLE_PERMISSIONS_CHANGE, object_type="Group", object_id=instance.pk,
                  details={"group": getattr(instance, "name", ""), "change": action.removeprefix("post_"),
                           "permission_ids": sorted(pk_set or [])})


def connect() -> None:
    from django.contrib.auth.models import Group, User
    from django.db.models.signals import m2m_changed

    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="audit-role-change")
    m2m_changed.connect(_permissions_changed, sender=Group.permissions.through, dispatch_uid=PERMISSIONS_CHANGED_UID)
    user_logged_in.connect(_logged_in, dispatch_uid="audit-login")
    user_logged_out.connect(_logged_out, dispatch_uid="audit-logout")
    user_login_failed.connect(_login_failed, dispatch_uid="audit-login-failed")
