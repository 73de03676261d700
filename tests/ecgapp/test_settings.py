"""Settings: every variable read once in ecgapp/settings/base.py, no side effect when they import, the folders made
when a process starts."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ecgapp import startup

BASE = Path(__file__).resolve().parents[2] / "ecgapp" / "settings" / "base.py"


def fresh_settings() -> dict:
    """ecgapp/settings/base.py imported again under the environment of now (a module of its own)."""
    spec = importlib.util.spec_from_file_location("fresh_base_settings", BASE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_importing_the_settings_makes_no_folder(monkeypatch, tmp_path):
    data = tmp_path / "data"
    monkeypatch.setenv("ECGAPP_DATA_DIR", str(data))
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    fresh = fresh_settings()
    assert fresh["ECG_DATA_DIR"] == data and not data.exists()
    assert fresh["CELERY_BROKER_TRANSPORT_OPTIONS"]["data_folder_in"] == str(data / "broker" / "out")


def test_a_starting_process_makes_the_folders_the_settings_name(settings, tmp_path):
    from ecgapp.env import filesystem_broker_options

    settings.ECG_DATA_DIR = tmp_path / "data"
    settings.STATIC_ROOT = tmp_path / "data" / "staticfiles"
    settings.PROMETHEUS_MULTIPROC_DIR = tmp_path / "prometheus"
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(tmp_path / "broker")
    startup.data_folders_create()
    for folder in ("data", "data/staticfiles", "prometheus", "broker/out", "broker/processed", "broker/control"):
        assert (tmp_path / folder).is_dir(), folder


def test_session_lifetimes_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ECGAPP_SESSION_IDLE_MINUTES", "10")
    monkeypatch.setenv("ECGAPP_SESSION_MAX_HOURS", "8")
    fresh = fresh_settings()
    assert (fresh["SESSION_COOKIE_AGE"], fresh["ECG_SESSION_MAX_AGE"]) == (10 * 60, 8 * 3600)
