"""Logging in under attack (issue 12): throttling that a look-alike name, the admin's login or a stranger cannot
get round or turn against the real user; malformed names; sessions and pages that do not outlive their use."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from clinical.audit import AuditAction
from clinical.models import AuditEvent
from clinical.roles import roles_ensure

PASSWORD = "pw-for-tests-1"
THROTTLED = b"Too many failed attempts"
INVALID = b"Please enter a correct username and password"


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Every timezone.now() in the app (audit events, sessions, the throttle) reads this clock."""
    c = Clock()
    monkeypatch.setattr(timezone, "now", lambda: c.now)
    return c


def person(username: str, role: str = "clinician", *, staff: bool = False) -> User:
    roles_ensure()
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    user.groups.add(Group.objects.get(name=role))
    return user


def attempt(client, username: str, password: str, ip: str, url: str = "/login/"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


# Row 1 ---------------------------------------------------------------------------------------------------------

def test_a_look_alike_username_is_throttled_as_the_account_it_logs_in_to(client, db, clock):
    person("victim1")
    person("victim2")
    for _ in range(6):
        attempt(client, "victim1", "wrong-password", "10.0.0.1")
    # U+FF56 FULLWIDTH LATIN SMALL LETTER V: NFKC makes it 'v', so Django would log in as victim1.
    resp = attempt(client, "\uff56ictim1", PASSWORD, "10.0.0.1")
    assert resp.status_code == 200 and THROTTLED in resp.content and not signed_in(client)

    for _ in range(20):
        attempt(client, "\uff56ictim2", "wrong-password", "10.0.0.2")
    resp = attempt(client, "victim2", PASSWORD, "10.0.0.2")
    assert THROTTLED in resp.content and not signed_in(client)
    failed = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED, details__username_key="victim2")
    assert failed.count() == 5 and failed.first().details["typed"] == "\uff56ictim2"
    throttled = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_THROTTLED, details__username_key="victim2")
    assert throttled.count() == 16


# Row 2 ---------------------------------------------------------------------------------------------------------

def test_the_admin_login_is_the_throttled_app_login(client, db, clock):
    person("compliance", "compliance", staff=True)
    for _ in range(12):
        resp = attempt(client, "compliance", "wrong-password", "10.0.0.3", url="/admin/login/")
        assert resp.status_code == 302 and resp["Location"].startswith("/login/?next=")
    resp = attempt(client, "compliance", PASSWORD, "10.0.0.3", url="/admin/login/")
    assert not signed_in(client) and client.get(reverse("clinical:audit-list")).status_code == 302

    # The admin sends people to /login/ and back, so its login is throttled there like any other.
    first = client.get("/admin/", follow=True, REMOTE_ADDR="10.0.0.3")
    assert first.redirect_chain[-1][0] == "/login/?next=/admin/"
    for _ in range(5):
        client.post("/login/?next=/admin/", {"username": "compliance", "password": "wrong"}, REMOTE_ADDR="10.0.0.3")
    resp = client.post("/login/?next=/admin/", {"username": "compliance", "password": PASSWORD},
                       REMOTE_ADDR="10.0.0.3")
    assert THROTTLED in resp.content and not signed_in(client)
    clock.advance(minutes=2)
    resp = client.post("/login/?next=/admin/", {"username": "compliance", "password": PASSWORD, "next": "/admin/"},
                       REMOTE_ADDR="10.0.0.3")
    assert resp.status_code == 302 and resp["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN, actor__username="compliance").count() == 1


def test_a_signed_in_person_without_admin_rights_is_refused_not_sent_round_in_circles(client, clinician):
    client.force_login(clinician)
    assert client.get("/admin/login/?next=/admin/").status_code == 403


# Row 3 ---------------------------------------------------------------------------------------------------------

def test_a_stranger_backs_off_exponentially_and_cannot_keep_the_real_user_out(client, db, clock):
    person("dr-victim")
    stranger = "203.0.113.9"
    for _ in range(5):
        assert INVALID in attempt(client, "dr-victim", "guess", stranger).content
    # From the stranger's address each failure now doubles the wait: 1, 2, 4 ... minutes.
    for wait in (1, 2, 4, 8):
        assert THROTTLED in attempt(client, "dr-victim", "guess", stranger).content
        clock.advance(minutes=wait, seconds=-5)
        assert THROTTLED in attempt(client, "dr-victim", "guess", stranger).content
        clock.advance(seconds=6)
        assert INVALID in attempt(client, "dr-victim", "guess", stranger).content
    clock.advance(minutes=15, seconds=1)  # the cap: never longer than 15 minutes
    assert INVALID in attempt(client, "dr-victim", "guess", stranger).content
    assert THROTTLED in attempt(client, "dr-victim", PASSWORD, stranger).content and not signed_in(client)

    # The real user, from their own workstation, logs in at once.
    resp = attempt(client, "dr-victim", PASSWORD, "10.20.30.40")
    assert resp.status_code == 302 and signed_in(client)
    failed = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_FAILED, ip=stranger)
    throttled = AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_THROTTLED, ip=stranger)
    assert failed.count() == 10 and throttled.count() == 9
    assert {e.details["scope"] for e in throttled} == {"pair"}


def test_the_wait_reads_the_same_for_an_account_that_does_not_exist(client, db, clock):
    person("dr-real")
    messages = []
    for name, ip in (("dr-real", "198.51.100.1"), ("dr-imaginary", "198.51.100.2")):
        for _ in range(5):
            attempt(client, name, "guess", ip)
        messages.append(attempt(client, name, "guess", ip).context["form"].non_field_errors())
    assert messages[0] == messages[1] and THROTTLED.decode() in messages[0][0]
    assert "account" not in messages[0][0]


def test_an_address_spraying_many_usernames_is_throttled_as_a_whole(client, db, clock):
    person("dr-sprayed")
    sprayer = "192.0.2.66"
    for i in range(10):  # auth.ADDRESS_FREE_USERNAMES
        assert INVALID in attempt(client, f"user-{i}", "Spring2025!", sprayer).content
    resp = attempt(client, "dr-sprayed", PASSWORD, sprayer)
    assert THROTTLED in resp.content and not signed_in(client)
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_THROTTLED).last().details["scope"] == "address"
    assert attempt(client, "dr-sprayed", PASSWORD, "10.9.9.9").status_code == 302


def test_many_addresses_against_one_username_slow_only_addresses_it_never_logged_in_from(client, db, clock):
    user = person("dr-target")
    assert attempt(client, "dr-target", PASSWORD, "10.0.0.50").status_code == 302  # their workstation
    client.logout()
    clock.advance(hours=2)
    for i in range(20):  # a botnet, auth.USERNAME_FREE_FAILURES: 4 tries from each of 5 addresses, under the pair limit
        attempt(client, "dr-target", "guess", f"198.18.0.{i % 5 + 1}")
    assert THROTTLED in attempt(client, "dr-target", PASSWORD, "198.18.7.7").content  # a new address waits
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_LOGIN_THROTTLED).last().details["scope"] == "username"
    resp = attempt(client, "dr-target", PASSWORD, "10.0.0.50")
    assert resp.status_code == 302 and int(client.session["_auth_user_id"]) == user.pk
    client.logout()
    clock.advance(minutes=1, seconds=1)  # the short delay has passed for everyone
    assert attempt(client, "dr-target", PASSWORD, "198.18.7.7").status_code == 302


def test_a_successful_login_clears_its_own_failures(client, db, clock):
    person("dr-typo")
    for _ in range(4):
        attempt(client, "dr-typo", "typo", "10.0.0.60")
    clock.advance(seconds=1)
    assert attempt(client, "dr-typo", PASSWORD, "10.0.0.60").status_code == 302
    client.logout()
    clock.advance(seconds=1)
    for _ in range(4):
        assert INVALID in attempt(client, "dr-typo", "typo", "10.0.0.60").content
    assert attempt(client, "dr-typo", PASSWORD, "10.0.0.60").status_code == 302


# Row 7 ---------------------------------------------------------------------------------------------------------

def test_a_nul_byte_in_the_username_is_an_ordinary_failed_login(client, db):
    resp = attempt(client, "a\x00b", "whatever", "10.0.0.70")
    assert resp.status_code == 200 and INVALID in resp.content
    event = AuditEvent.objects.get(action=AuditAction.AUTH_LOGIN_FAILED)
    assert event.details["username"] == "a\\x00b" and event.object_id == "a\\x00b"


# Row 9 ---------------------------------------------------------------------------------------------------------

def test_responses_with_patient_data_are_never_cached(client, clinician):
    api = client.get("/api/v1/ecgs/")
    assert "no-store" in api["Cache-Control"] and "private" in api["Cache-Control"]
    client.force_login(clinician)
    for url in (reverse("clinical:ecg-list"), reverse("clinical:ecg-upload"), "/api/v1/ecgs/"):
        cache = client.get(url)["Cache-Control"]
        assert "no-store" in cache and "private" in cache, url
    assert "public" in client.get(reverse("plotly-js"))["Cache-Control"]  # a library, not patient data
    assert "no-store" not in client.get(reverse("health-live")).get("Cache-Control", "")


def test_a_session_ends_when_idle_and_after_its_maximum_age(client, db, clock, settings):
    user = person("dr-idle")
    assert attempt(client, "dr-idle", PASSWORD, "10.0.0.80").status_code == 302
    for _ in range(3):  # in use: every request slides the expiry
        clock.advance(minutes=25)
        assert client.get(reverse("clinical:ecg-list")).status_code == 200
    clock.advance(minutes=31)
    assert client.get(reverse("clinical:ecg-list")).status_code == 302

    client.force_login(user)
    for _ in range(12 * 3):
        clock.advance(minutes=20)
        assert client.get(reverse("clinical:ecg-list")).status_code == 200
    clock.advance(minutes=1)
    assert client.get(reverse("clinical:ecg-list")).status_code == 302
    assert AuditEvent.objects.filter(action=AuditAction.AUTH_LOGOUT, actor=user).last().details == {"reason": "max_age"}
    assert settings.SESSION_COOKIE_AGE == 30 * 60 and settings.ECG_SESSION_MAX_AGE == 12 * 3600  # the defaults

