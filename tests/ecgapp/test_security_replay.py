"""scripts/security_replay.py: refuses targets off this machine, and its row checks run against a live server."""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection, connections
from django.db.models.signals import post_migrate

from clinical.roles import roles_ensure

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "security_replay.py"


@pytest.fixture(scope="module")
def replay():
    spec = importlib.util.spec_from_file_location("security_replay", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["security_replay"] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("security_replay", None)


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000", "http://example.org", "http://0.0.0.0:8000",
                                 "http://[2001:db8::1]:8000", "https://127.0.0.1:8000", "http://128.0.0.1"])
def test_a_target_off_this_machine_is_refused_before_any_request(replay, url, capsys):
    assert replay.main(["--url", url]) == 2
    assert "refusing" in capsys.readouterr().err


def test_a_non_loopback_source_address_is_refused(replay):
    with pytest.raises(replay.NotLoopback):
        replay.Client("http://127.0.0.1:1", replay.Budget(1, 1), source="192.168.1.2")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.3.2.1:80", "http://localhost:8000",
                                 "http://[::1]:8000"])
def test_loopback_targets_are_accepted(replay, url):
    assert replay.target_check(url).startswith("http://")


_GUARD = importlib.import_module("clinical.migrations.0003_auditevent_append_only")


def _guard_back(sender, using="default", **kwargs) -> None:
    post_migrate.disconnect(dispatch_uid="replay-audit-guard-back")
    with connections[using].cursor() as cur:
        for sql in _GUARD.SQLITE_CREATE:
            cur.execute(sql)


@pytest.fixture
def audit_guard_allows_test_flush(transactional_db):
    """SQLite flushes a live-server test's tables with DELETE, which the audit trigger refuses: the guard is lifted
    for that flush only, and put back when the flush ends (flush sends post_migrate)."""
    yield
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            for sql in _GUARD.SQLITE_DROP:
                cur.execute(sql)
        post_migrate.connect(_guard_back, weak=False, dispatch_uid="replay-audit-guard-back")


def test_every_row_runs_against_a_live_server_without_crashing(replay, audit_guard_allows_test_flush, live_server,
                                                               capsys):
    """The demo accounts exist, no ECG does: rows may FAIL (the fixes land separately), none may crash."""
    roles_ensure()
    for name in ("clinician", "reviewer", "compliance", "admin", "clinician2"):
        user = User.objects.create_user(username=name, password=replay.PASSWORD)
        user.groups.add(Group.objects.get(name=name.rstrip("2")))
    url = live_server.url.replace("localhost", "127.0.0.1")
    status = replay.main(["--url", url, "--time-limit", "120"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("row ")]
    assert [int(line.split()[1]) for line in lines] == list(range(1, 14)), out
    assert all(re.match(r"row \d+ (PASS|FAIL|SKIP): \S", line) for line in lines), out
    assert not re.search(r"could not run: (?!LookupError)", out), out  # LookupError: no demo ECG to use
    assert status in (0, 1)
