"""The admin role manages accounts in the Django admin: every change audited, no way to grant more than it has."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from clinical.audit import AuditAction
from clinical.models import AuditEvent
from clinical.roles import ROLES, roles_ensure

PASSWORD = "pw-for-tests-1"
CHANGELIST = reverse("admin:auth_user_changelist")


@pytest.fixture
def site_admin(db) -> User:
    """The admin role as the demo seeds it: staff, not a superuser."""
    roles_ensure()
    user = User.objects.create_user("adm-gus", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="admin"))
    return user


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def nurse(db) -> User:
    """An account the administrators manage: a clinician."""
    roles_ensure()
    user = User.objects.create_user("nurse-hal", password=PASSWORD)
    user.groups.add(Group.objects.get(name="clinician"))
    return user


def change_url(user: User) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def change_form(user: User, **overrides) -> dict:
    """The change form as the admin page posts it (unchecked boxes are simply absent)."""
    data = {"username": user.username, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email, "groups": [g.pk for g in user.groups.all()], "_save": "Save"}
    data.update({f: "on" for f in ("is_active", "is_staff", "is_superuser") if getattr(user, f)})
    for key, value in overrides.items():
        if value is False:
            data.pop(key, None)
        else:
            data[key] = "on" if value is True else value
    return data


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def role(name: str) -> int:
    return Group.objects.get(name=name).pk


def test_the_admin_role_lists_users_with_their_roles_and_other_roles_cannot(client, site_admin, nurse):
    client.force_login(site_admin)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert "nurse-hal" in html and "clinician" in html and "Last login" in html
    for name in ("clinician", "reviewer", "compliance", "integrator"):
        other = User.objects.create_user(f"x-{name}", password=PASSWORD, is_staff=True)
        other.groups.add(Group.objects.get(name=name))
        client.force_login(other)
        assert client.get(CHANGELIST).status_code == 403, name


def test_creating_a_user_is_audited_and_needs_a_ten_character_password(client, site_admin):
    client.force_login(site_admin)
    add = reverse("admin:auth_user_add")
    short = client.post(add, {"username": "dr-new", "usable_password": "true", "password1": "short-pw1",
                              "password2": "short-pw1"})
    assert short.status_code == 200 and b"at least 10 characters" in short.content
    assert not User.objects.filter(username="dr-new").exists() and not events(AuditAction.USER_CREATE)

    resp = client.post(add, {"username": "dr-new", "usable_password": "true", "password1": "a-long-pass-9",
                             "password2": "a-long-pass-9"})
    assert resp.status_code == 302
    new = User.objects.get(username="dr-new")
    assert new.check_password("a-long-pass-9") and not new.is_staff and not new.is_superuser
    [created] = events(AuditAction.USER_CREATE)
    assert created.actor == site_admin and created.object_id == str(new.pk)
    assert created.details == {"user": "dr-new", "is_active": True, "is_staff": False, "is_superuser": False,
                               "usable_password": True}
    assert "a-long-pass-9" not in str(created.details)


def test_assigning_a_role_is_audited_once_by_the_role_signal(client, site_admin, nurse):
    client.force_login(site_admin)
    resp = client.post(change_url(nurse), change_form(nurse, groups=[role("clinician"), role("reviewer")]))
    assert resp.status_code == 302
    assert set(nurse.groups.values_list("name", flat=True)) == {"clinician", "reviewer"}
    changes = [e for e in events("role.change") if e.object_id == str(nurse.pk)]
    # One from the fixture (clinician), one for this save: Django's set() adds only the new group.
    assert [e.details["groups"] for e in changes] == [["clinician"], ["reviewer"]]
    assert not events(AuditAction.USER_CHANGE)  # nothing else changed


def test_deactivating_and_activating_are_audited(client, site_admin, nurse):
    client.force_login(site_admin)
    assert client.post(change_url(nurse), change_form(nurse, is_active=False)).status_code == 302
    nurse.refresh_from_db()
    assert not nurse.is_active
    [off] = events(AuditAction.USER_DEACTIVATE)
    assert off.actor == site_admin and off.details == {"user": "nurse-hal"}

    resp = client.post(CHANGELIST, {"action": "activate", "_selected_action": [nurse.pk]})
    assert resp.status_code == 302
    nurse.refresh_from_db()
    assert nurse.is_active and len(events(AuditAction.USER_ACTIVATE)) == 1
    assert not events(AuditAction.USER_CHANGE)


def test_the_deactivate_action_spares_the_administrator_and_superusers(client, site_admin, nurse, root):
    client.force_login(site_admin)
    client.post(CHANGELIST, {"action": "deactivate", "_selected_action": [nurse.pk, site_admin.pk, root.pk]})
    assert [e.object_id for e in events(AuditAction.USER_DEACTIVATE)] == [str(nurse.pk)]
    assert User.objects.get(pk=site_admin.pk).is_active and User.objects.get(pk=root.pk).is_active


def test_a_password_reset_by_an_administrator_is_audited_without_the_password(client, site_admin, nurse):
    client.force_login(site_admin)
    url = reverse("admin:auth_user_password_change", args=[nurse.pk])
    short = client.post(url, {"password1": "short-pw1", "password2": "short-pw1", "set-password": "1",
                              "usable_password": "true"})
    assert short.status_code == 200 and not events(AuditAction.USER_PASSWORD_SET)
    resp = client.post(url, {"password1": "a-new-password-2", "password2": "a-new-password-2",
                             "set-password": "1", "usable_password": "true"})
    assert resp.status_code == 302
    nurse.refresh_from_db()
    assert nurse.check_password("a-new-password-2")
    [reset] = events(AuditAction.USER_PASSWORD_SET)
    assert reset.actor == site_admin and reset.details == {"user": "nurse-hal", "usable_password": True}


def test_other_field_changes_are_audited_with_old_and_new_values(client, site_admin, nurse):
    client.force_login(site_admin)
    client.post(change_url(nurse), change_form(nurse, is_staff=True, email="hal@ward.invalid"))
    [change] = events(AuditAction.USER_CHANGE)
    assert change.actor == site_admin
    assert change.details["fields"] == {"is_staff": [False, True], "email": ["", "hal@ward.invalid"]}


def test_giving_the_admin_role_makes_the_user_staff_audited(client, site_admin, nurse):
    client.force_login(site_admin)
    client.post(change_url(nurse), change_form(nurse, groups=[role("admin")]))
    nurse.refresh_from_db()
    assert nurse.is_staff
    [change] = events(AuditAction.USER_CHANGE)
    assert change.details == {"user": "nurse-hal", "reason": "admin role", "fields": {"is_staff": [False, True]}}
    client.force_login(nurse)
    assert client.get(CHANGELIST).status_code == 200


def test_an_admin_who_is_not_a_superuser_cannot_grant_superuser_or_permissions(client, site_admin, nurse):
    client.force_login(site_admin)
    page = client.get(change_url(nurse)).content.decode()
    assert 'name="is_superuser"' not in page and 'name="user_permissions"' not in page
    perm = Permission.objects.get(codename="delete_user")
    client.post(change_url(nurse), change_form(nurse, is_superuser=True, user_permissions=[perm.pk]))
    client.post(change_url(site_admin), change_form(site_admin, is_superuser=True, user_permissions=[perm.pk]))
    for user in (nurse, site_admin):
        user.refresh_from_db()
        assert not user.is_superuser and not user.user_permissions.exists()
    assert not events(AuditAction.USER_CHANGE)


def test_an_admin_who_is_not_a_superuser_cannot_take_over_a_superuser(client, site_admin, root):
    client.force_login(site_admin)
    assert client.get(change_url(root)).status_code == 200  # may see it, read-only
    assert client.post(change_url(root), change_form(root, is_active=False)).status_code == 403
    url = reverse("admin:auth_user_password_change", args=[root.pk])
    assert client.post(url, {"password1": "taken-over-pw-1", "password2": "taken-over-pw-1",
                             "set-password": "1", "usable_password": "true"}).status_code == 403
    root.refresh_from_db()
    assert root.is_active and root.check_password(PASSWORD) and not events(AuditAction.USER_PASSWORD_SET)


def test_an_admin_can_assign_only_the_roles_and_cannot_edit_their_permissions(client, site_admin, nurse):
    ops = Group.objects.create(name="ops")
    ops.permissions.add(Permission.objects.get(codename="change_group"))
    client.force_login(site_admin)
    resp = client.post(change_url(nurse), change_form(nurse, groups=[ops.pk]))
    assert resp.status_code == 200 and b"Select a valid choice" in resp.content
    assert not nurse.groups.filter(name="ops").exists()

    admin_role = Group.objects.get(name="admin")
    assert client.get(reverse("admin:auth_group_change", args=[admin_role.pk])).status_code == 200  # read
    perm = Permission.objects.get(codename="delete_user")
    resp = client.post(reverse("admin:auth_group_change", args=[admin_role.pk]),
                       {"name": "admin", "permissions": [perm.pk]})
    assert resp.status_code == 403 and not admin_role.permissions.filter(pk=perm.pk).exists()
    assert client.post(reverse("admin:auth_group_add"), {"name": "mine"}).status_code == 403
    assert not Group.objects.filter(name="mine").exists()


def test_a_superuser_may_grant_superuser_and_it_is_audited(client, root, nurse):
    client.force_login(root)
    client.post(change_url(nurse), change_form(nurse, is_superuser=True))
    nurse.refresh_from_db()
    assert nurse.is_superuser
    [change] = events(AuditAction.USER_CHANGE)
    assert change.actor == root and change.details["fields"] == {"is_superuser": [False, True]}


def test_roles_ensure_is_idempotent_and_gives_the_admin_role_account_permissions(db):
    roles_ensure()
    before = {g.name: set(g.permissions.values_list("content_type__app_label", "codename"))
              for g in Group.objects.filter(name__in=ROLES)}
    n_events = AuditEvent.objects.count()
    roles_ensure()
    after = {g.name: set(g.permissions.values_list("content_type__app_label", "codename"))
             for g in Group.objects.filter(name__in=ROLES)}
    assert after == before and AuditEvent.objects.count() == n_events
    assert {("auth", "add_user"), ("auth", "change_user"), ("auth", "view_user"), ("auth", "view_group")} \
        <= before["admin"]
    assert not any(app == "auth" for name, perms in before.items() if name != "admin" for app, _ in perms)
    assert not {("auth", "delete_user"), ("auth", "change_group"), ("auth", "add_permission")} & before["admin"]
