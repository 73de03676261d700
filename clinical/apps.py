from __future__ import annotations

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _sqlite_pragmas(sender, connection, **kwargs) -> None:
    # The embedded default has the web server and a worker writing at once: WAL lets readers and one writer
    # proceed together instead of failing with "database is locked".
    if connection.vendor == "sqlite":
        with connection.cursor() as cur:
            cur.execute("PRAGMA journal_mode=WAL;")
            cur.execute("PRAGMA synchronous=NORMAL;")


class ClinicalConfig(AppConfig):
    name = "clinical"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from clinical import auth

        connection_created.connect(_sqlite_pragmas)
        auth.connect()
