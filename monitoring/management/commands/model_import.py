"""Register a model export (python -m training export) as a candidate: verified, stored, audited."""
from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clinical.errors import ApplicationError
from monitoring.registry import model_version_import


class Command(BaseCommand):
    help = ("Import a model export folder (manifest.json, members, calibration, reports) into the registry as a "
            "candidate; compliance staff promote it from Monitoring -> Models.")

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="the export folder")
        parser.add_argument("--actor", default="", help="username recorded as the importer (a compliance user); "
                                                        "default: the operator (no user)")

    def handle(self, *args, path: Path, actor: str, **options):
        user = None
        if actor:
            try:
                user = get_user_model().objects.get(username=actor)
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"No user {actor!r}.") from exc
        try:
            version = model_version_import(path=path, actor=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        macro = version.fold9.get("superclass_macro_auc")
        self.stdout.write(f"{version.version} registered as a candidate ({len(version.files)} files verified, "
                          f"git {version.git_commit[:12]}"
                          + (f", fold-9 superclass macro AUC {macro:.3f}" if macro is not None else "") + ").")
