"""Security settings a hospital's IT team checks: secrets from the environment or files, headers, no raw uploads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from ecgapp.env import ImproperlyConfiguredEnv, env_str

ROOT = Path(__file__).resolve().parents[2]


def test_a_secret_can_come_from_a_file(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-a-mounted-file\n")
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    monkeypatch.setenv("DJANGO_SECRET_KEY_FILE", str(secret))
    assert env_str("DJANGO_SECRET_KEY") == "s3cret-from-a-mounted-file"
    monkeypatch.setenv("DJANGO_SECRET_KEY", "direct")  # the variable itself wins
    assert env_str("DJANGO_SECRET_KEY") == "direct"


def test_an_unreadable_secret_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfiguredEnv, match="DATABASE_URL_FILE=.*cannot be read"):
        env_str("DATABASE_URL")


def test_production_settings_refuse_to_start_without_a_secret_and_pass_check_deploy(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_SECRET_KEY", "DJANGO_ALLOW_ASYNC"))} | {
        "DJANGO_SETTINGS_MODULE": "ecgapp.settings.production", "ECGAPP_DATA_DIR": str(tmp_path)}
    refused = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "DJANGO_SECRET_KEY must be set in production" in refused.stderr
    (tmp_path / "key").write_text("a-long-random-production-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
    ok = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                        env=env | {"DJANGO_SECRET_KEY_FILE": str(tmp_path / "key")}, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_pages_carry_a_strict_content_security_policy(client, clinician):
    client.force_login(clinician)
    response = client.get(reverse("clinical:ecg-upload"))
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "object-src 'none'" in csp and "frame-ancestors 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "camera=()" in response.headers["Permissions-Policy"]
    # No executable inline script left in the page (only JSON data blocks, which CSP does not run).
    page = response.content.decode()
    assert "<script>" not in page


def test_uploaded_files_are_never_served_raw(client, clinician, wfdb_pair, settings):
    from clinical import services

    record = services.ecg_submit(actor=clinician, pseudonym="PT-RAW", age=50, sex="F", files=wfdb_pair, fs=None)
    client.force_login(clinician)
    for path in ("/media/", f"/media/{record.source_files[0]}", f"/static/{record.source_files[0]}",
                 f"/ecgs/{record.public_id}/{record.source_files[0]}"):
        assert client.get(path).status_code == 404
