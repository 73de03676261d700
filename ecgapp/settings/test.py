"""Test settings: the same services as the environment gives (PostgreSQL + Redis in CI), fast hashing."""
from __future__ import annotations

import os
import tempfile

if (_worker := os.environ.get("PYTEST_XDIST_WORKER", "")).startswith("gw"):
    # Under pytest-xdist (make test-fast) each worker process gets what pytest-django gives it for the database: its
    # own Redis database (throttle counters, queues and locks; the URL's db + 1 + worker number, mod 16) and its own
    # Prometheus folder, so that one worker's tests never count another's requests. Set before base reads them.
    from urllib.parse import urlsplit

    if os.environ.get("REDIS_URL"):
        _url = urlsplit(os.environ["REDIS_URL"])
        _db = (int(_url.path.strip("/") or 0) + 1 + int(_worker[2:])) % 16
        os.environ["REDIS_URL"] = _url._replace(path=f"/{_db}").geturl()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"ecgapp-test-prometheus-{_worker}-")

from ecgapp.env import filesystem_broker_options  # noqa: E402
from ecgapp.settings.base import *  # noqa: E402, F403
from ecgapp.settings.base import REDIS_URL  # noqa: E402

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
