"""Append-only audit trail: each event carries the hash of the one before it."""
from __future__ import annotations

import contextvars
import hashlib
import json
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from clinical.models import AuditEvent

GENESIS = "0" * 64
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("ip", default=None)
# Serialises writers on PostgreSQL so two transactions never chain onto the same predecessor.
_ADVISORY_LOCK = 72_616_001


def _digest(prev_hash: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def event_payload(e: AuditEvent) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "actor": e.actor_label, "action": e.action, "object_type": e.object_type,
            "object_id": e.object_id, "request_id": e.request_id, "ip": e.ip, "details": e.details}


def audit_log(*, actor, action: str, object_type: str, object_id: str | int,
              details: dict[str, Any] | None = None) -> AuditEvent:
    """Write one event; call inside the transaction of the change it records."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK])
        last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        prev = last or GENESIS
        event = AuditEvent(
            at=timezone.now(),
            actor=actor if getattr(actor, "pk", None) else None,
            actor_label=getattr(actor, "username", None) or "system",
            action=action, object_type=object_type, object_id=str(object_id),
            request_id=current_request_id.get(), ip=current_ip.get(), details=details or {}, prev_hash=prev,
        )
        event.hash = _digest(prev, event_payload(event))
        event.save()
        return event


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    """The hash an event must carry given its predecessor's (for writers that build rows in bulk)."""
    return _digest(prev_hash, event_payload(event))


def audit_verify() -> tuple[bool, int, str]:
    """Walk the chain; returns (ok, events checked, message naming the first broken event)."""
    prev = GENESIS
    n = 0
    # A row rewritten behind the triggers may have moved on disk: walk strictly by id.
    for e in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        n += 1
        if e.prev_hash != prev or _digest(prev, event_payload(e)) != e.hash:
            return False, n, f"audit event {e.id} ({e.action}) does not match the chain"
        prev = e.hash
    return True, n, f"{n} audit events verified"
