"""What a process does once, when Django starts in it: the folders the settings name, and the environment variable
prometheus_client reads when it is first imported. Settings only name these; nothing happens when they import."""
from __future__ import annotations

import logging.config
import os
from pathlib import Path

from ecgapp.env import filesystem_broker_folders


def data_folders_create() -> None:
    """Make the app's folders (idempotent): the data folder (SQLite's file), static files (WhiteNoise warns about a
    missing STATIC_ROOT), the metrics samples folder and, on the embedded default, the broker's folders (kombu's
    filesystem transport does not make them)."""
    from django.conf import settings

    folders = [Path(settings.ECG_DATA_DIR), Path(settings.STATIC_ROOT), Path(settings.PROMETHEUS_MULTIPROC_DIR)]
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folders += filesystem_broker_folders(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)


def process_start(logging_settings: dict) -> None:
    """settings.LOGGING_CONFIG: Django calls it in django.setup(), before it imports the apps (and with them
    prometheus_client, which picks multiprocess mode from PROMETHEUS_MULTIPROC_DIR at import)."""
    from django.conf import settings

    logging.config.dictConfig(logging_settings)
    data_folders_create()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.PROMETHEUS_MULTIPROC_DIR))
