"""API tokens: created and revoked by services (audited); only their sha256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from clinical.audit import AuditAction, audit_log
from clinical.errors import ApplicationError
from clinical.models import ApiToken

TOKEN_PREFIX = "ecg"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user, name: str, days: int = 90, actor=None) -> tuple[ApiToken, str]:
    """Returns the stored token and the secret string, which is never stored and cannot be shown again."""
    if days < 1 or days > 366:
        raise ApplicationError("A token lives between 1 and 366 days.", "days")
    prefix = secrets.token_hex(5)
    secret = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], prefix=prefix, digest=_digest(secret),
                                        expires_at=timezone.now() + timedelta(days=days))
        audit_log(actor=actor, action=AuditAction.API_TOKEN_CREATE, object_type="ApiToken", object_id=prefix,
                  details={"user": user.username, "name": name, "days": days})
    return token, secret


def api_token_revoke(*, prefix: str, actor=None) -> ApiToken:
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().get(prefix=prefix)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit_log(actor=actor, action=AuditAction.API_TOKEN_REVOKE, object_type="ApiToken", object_id=prefix,
                      details={"user": token.user.username})
    return token


# "Last used" is kept to the minute: a write on every request (an integrator polls a job every half second) cost
# more PostgreSQL time under load than the reads it served.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_token_check(secret: str) -> ApiToken | None:
    """The active token for a presented secret, or None (unknown, wrong, expired or revoked)."""
    parts = secret.split("_", 2)  # the secret part may itself contain "_"
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1]).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(secret)):
        return None
    if not token.active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
