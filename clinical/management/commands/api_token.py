from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clinical.errors import ApplicationError
from clinical.models import ApiToken
from clinical.tokens import api_token_create, api_token_revoke


class Command(BaseCommand):
    help = "Create (prints the secret once), list or revoke API tokens."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="op", required=True)
        c = sub.add_parser("create")
        c.add_argument("--user", required=True)
        c.add_argument("--name", required=True)
        c.add_argument("--days", type=int, default=90)
        sub.add_parser("list")
        r = sub.add_parser("revoke")
        r.add_argument("prefix")

    def handle(self, *args, op: str, **o):
        if op == "create":
            try:
                user = get_user_model().objects.get(username=o["user"])
                token, secret = api_token_create(user=user, name=o["name"], days=o["days"])
            except (get_user_model().DoesNotExist, ApplicationError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"{secret}\n(shown once; expires {token.expires_at:%Y-%m-%d})")
        elif op == "list":
            for t in ApiToken.objects.select_related("user").order_by("created_at"):
                state = "revoked" if t.revoked_at else ("active" if t.active else "expired")
                self.stdout.write(f"{t.prefix}  {t.user.username:<16} {t.name:<24} {state:<8} "
                                  f"expires {t.expires_at:%Y-%m-%d}")
        else:
            try:
                api_token_revoke(prefix=o["prefix"])
            except ApiToken.DoesNotExist as exc:
                raise CommandError(f"No token with prefix {o['prefix']}.") from exc
            self.stdout.write(f"revoked {o['prefix']}")
