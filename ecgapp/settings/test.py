"""Test settings: the same services as the environment gives (PostgreSQL + Redis in CI), fast hashing."""
from __future__ import annotations

from ecgapp.env import filesystem_broker_options
from ecgapp.settings.base import *  # noqa: F403
from ecgapp.settings.base import REDIS_URL

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEMO_MODE = True

if not REDIS_URL:
    # Tests get their own filesystem broker so they never consume a running dev server's messages.
    import tempfile
    from pathlib import Path

    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(Path(tempfile.mkdtemp(prefix="ecgapp-test-broker-")))
# Tests never read or extend a running app's audit checkpoints (they would name events the test database lacks).
import tempfile as _tempfile  # noqa: E402
from pathlib import Path as _Path  # noqa: E402

ECG_AUDIT_CHECKPOINTS = _Path(_tempfile.mkdtemp(prefix="ecgapp-test-audit-")) / "audit-checkpoints.jsonl"

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # On the embedded default the test database is a file too, not Django's shared-cache in-memory one: there a
    # write from the live server's thread while a worker thread reads fails at once with "database table is locked"
    # (SQLite's shared-cache table locks ignore the busy timeout), where the app's WAL file with its 30 s busy timeout
    # (ecgapp.env.SQLITE_OPTIONS) waits, as it does in production.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(_Path(_tempfile.mkdtemp(prefix="ecgapp-test-db-")) / "test.sqlite3")}
