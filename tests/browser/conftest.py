"""A live server, a real Celery worker in a thread (on the configured broker), and headless Chromium."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("ECGAPP_SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"))

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


@pytest.fixture(autouse=True)
def audit_guard_allows_test_flush(transactional_db):
    """Live-server tests end with a flush of every table. PostgreSQL flushes with TRUNCATE, which the audit
    triggers do not see; SQLite flushes with DELETE, so the SQLite guard is lifted for that flush only (this
    fixture tears down just before it) and put back before the next test."""
    import importlib

    from django.db import connection

    guard = importlib.import_module("clinical.migrations.0003_auditevent_append_only")
    sqlite = connection.vendor == "sqlite"
    if sqlite:
        with connection.cursor() as cur:
            for sql in guard.SQLITE_CREATE:
                cur.execute(sql)
    yield
    if sqlite:
        with connection.cursor() as cur:
            for sql in guard.SQLITE_DROP:
                cur.execute(sql)


@pytest.fixture
def celery_worker_thread(transactional_db, weights_dir):
    from celery.contrib.testing.worker import start_worker
    from celery.signals import task_postrun
    from django.db import connection

    from ecgapp.celery import app

    # The worker thread keeps its own database connection; close it after each task so the test database
    # can be dropped at the end of the session.
    def close_connection(**kwargs):
        connection.close()

    task_postrun.connect(close_connection, weak=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=20,
                          queues=["inference", "evidence", "monitoring", "celery"]) as worker:
            yield worker
    finally:
        task_postrun.disconnect(close_connection)


@pytest.fixture
def page(monkeypatch):
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to run beside it.
    # Scoped to the test, so no later test (or subprocess it starts) inherits the override.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1440, "height": 1000})
        pg.set_default_timeout(60_000)  # a loaded 2-core CI machine can be slow to serve the first pages
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        # A script or style the Content-Security-Policy blocked shows up only as a console error.
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy"
              in m.text else None)
        pg.js_errors = errors
        yield pg
        browser.close()
        # Django keeps connections per asyncio/greenlet context; the ones the test body opened while Playwright's
        # loop ran here would otherwise outlive the test (and block dropping the test database at the end).
        connections.close_all()


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


PASSWORD = "browser-test-pw-1"


def person(username: str, role: str):
    """A user in one of the roles (the groups must exist: roles_ensure())."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user(username, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


def log_in(page, base, username):
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def upload_ecg(page, base, *, pseudonym: str, age: str, sex: str, files, ready: str = "#ecg-plot .main-svg",
               evidence: bool = True):
    """Upload through the form and wait on the result page until the analysis is done and ``ready`` is drawn; with
    ``evidence``, also until the evidence is no longer pending (the page reloads itself when it arrives, which would
    otherwise interrupt whatever a test does next)."""
    page.goto(f"{base}/ecgs/new/")
    page.fill("#id_pseudonym", pseudonym)
    page.fill("#id_age", age)
    page.select_option("#id_sex", sex)
    page.set_input_files("#id_files", files)
    page.click("#submit-upload")
    page.wait_for_url("**/ecgs/*/")
    page.wait_for_selector("#job-status.state-done", timeout=60_000)
    if evidence:
        page.wait_for_selector('#job-status.state-done:not([data-evidence="pending"])', timeout=60_000)
        page.wait_for_load_state("load")
    page.wait_for_selector(ready)
