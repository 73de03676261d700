"""An administrator creates an account in the admin, gives it the clinician role, and later deactivates it."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from clinical.audit import AuditAction
from clinical.models import AuditEvent
from clinical.roles import roles_ensure
from tests.browser.conftest import CHROMIUM, log_in, person, shot

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium")
NEW_PASSWORD = "ward-7-new-pw"


def log_in_as_new_user(browser, base: str, errors: list[str]):
    """A second browser, as the new clinician would use (separate cookies); its errors join `errors`."""
    pg = browser.new_page(viewport={"width": 1440, "height": 1000})
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy"
          in m.text else None)
    pg.goto(f"{base}/login/")
    pg.fill("#id_username", "dr-new")
    pg.fill("#id_password", NEW_PASSWORD)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    return pg


def test_admin_creates_a_clinician_who_can_upload_then_deactivates_them(live_server, page):
    roles_ensure()
    admin = person("adm-live", "admin")
    User.objects.filter(pk=admin.pk).update(is_staff=True)  # as seed_demo makes it
    base = live_server.url
    log_in(page, base, "adm-live")

    page.goto(f"{base}/admin/auth/user/")
    page.click("a.addlink")
    page.fill("#id_username", "dr-new")
    page.fill("#id_password1", NEW_PASSWORD)
    page.fill("#id_password2", NEW_PASSWORD)
    page.click("input[name=_save]")
    page.wait_for_selector("#user_form #id_groups_from")  # the change page of the new user
    assert not page.locator("#id_is_superuser").count() and not page.locator("#id_user_permissions_from").count()
    page.select_option("#id_groups_from", label="clinician")
    page.click("#id_groups_add")
    shot(page, "user-admin-assign-role")
    page.click("input[name=_save]")
    page.wait_for_selector("#result_list")
    row = page.locator("#result_list tr", has_text="dr-new")
    assert "clinician" in row.inner_text()
    shot(page, "user-admin-list")

    new_user = User.objects.get(username="dr-new")
    assert list(new_user.groups.values_list("name", flat=True)) == ["clinician"]
    clinician = log_in_as_new_user(page.context.browser, base, page.js_errors)
    clinician.goto(f"{base}/ecgs/new/")
    clinician.wait_for_selector("#id_files")
    shot(clinician, "user-admin-new-user-upload")

    page.goto(f"{base}/admin/auth/user/{new_user.pk}/change/")
    page.uncheck("#id_is_active")
    page.click("input[name=_save]")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tr", has_text="dr-new").locator(".field-is_active img[alt=False]").count()
    shot(page, "user-admin-deactivated")

    # The open session ends (Django's backend refuses inactive users) and a new login is refused.
    clinician.goto(f"{base}/ecgs/new/")
    assert "/login/" in clinician.url
    clinician.fill("#id_username", "dr-new")
    clinician.fill("#id_password", NEW_PASSWORD)
    clinician.click("button[type=submit]")
    clinician.wait_for_load_state()
    assert "/login/" in clinician.url
    shot(clinician, "user-admin-deactivated-login")

    by_admin = AuditEvent.objects.filter(actor=admin, object_id=str(new_user.pk))
    assert set(by_admin.values_list("action", flat=True)) == {AuditAction.USER_CREATE, AuditAction.USER_DEACTIVATE}
    assert AuditEvent.objects.filter(action="role.change", object_id=str(new_user.pk)).count() == 1
    assert not page.js_errors, page.js_errors
