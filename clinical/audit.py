"""Append-only audit trail: each event carries the hash of the one before it."""
from __future__ import annotations

import contextvars
import fcntl
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from clinical.models import AuditEvent

GENESIS = "0" * 64
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("ip", default=None)
# Serialises writers on PostgreSQL so two transactions never chain onto the same predecessor.
_ADVISORY_LOCK = 72_616_001
log = logging.getLogger(__name__)
# A copy of every checkpoint goes to this logger too, so a log shipper can keep one off this host.
checkpoint_log = logging.getLogger("clinical.audit.checkpoint")
NO_CHECKPOINTS = "no checkpoints: only the chain itself was checked"


class AuditAction(models.TextChoices):
    """Every kind of audit event, "<object>.<verb>". The values are stored and hashed into the chain: never rename
    one; add a member for a new kind of event (AuditEvent.action has no choices, so that needs no migration)."""

    API_TOKEN_CREATE = "api_token.create"
    API_TOKEN_REVOKE = "api_token.revoke"
    AUDIT_EXPORT = "audit.export"
    AUDIT_VIEW = "audit.view"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOGIN_THROTTLED = "auth.login_throttled"
    AUTH_LOGOUT = "auth.logout"
    CALIBRATION_ACTIVATE = "calibration.activate"
    CALIBRATION_PROPOSE = "calibration.propose"
    CALIBRATION_ROLLBACK = "calibration.rollback"
    ECG_IMPORT = "ecg.import"
    ECG_LIST = "ecg.list"
    ECG_MEASUREMENTS_BACKFILL = "ecg.measurements_backfill"
    ECG_REANALYSE = "ecg.reanalyse"
    ECG_UPLOAD = "ecg.upload"
    ECG_UPLOAD_REFUSED = "ecg.upload_refused"
    ECG_VIEW = "ecg.view"
    INFERENCE_COMPLETE = "inference.complete"
    INFERENCE_EVIDENCE = "inference.evidence"
    INFERENCE_EVIDENCE_FAILED = "inference.evidence_failed"
    INFERENCE_EVIDENCE_REQUESTED = "inference.evidence_requested"
    INFERENCE_FAILED = "inference.failed"
    INFERENCE_RETRY = "inference.retry"
    INTERPRETATION_AMEND = "interpretation.amend"
    INTERPRETATION_CONFIRM = "interpretation.confirm"
    INTERPRETATION_SIGN_FAILED = "interpretation.sign_failed"
    MODEL_CHANGE_REQUEST = "model.change_request"
    MODEL_CHANGE_WITHDRAW = "model.change_withdraw"
    MODEL_IMPORT = "model.import"
    MODEL_PROMOTE = "model.promote"
    MODEL_ROLLBACK = "model.rollback"
    MODEL_SHADOW_START = "model.shadow_start"
    MODEL_SHADOW_STOP = "model.shadow_stop"
    MODEL_SIGN_FAILED = "model.sign_failed"
    MONITORING_ALERT = "monitoring.alert"
    MONITORING_DRIFT_REQUESTED = "monitoring.drift_requested"
    MONITORING_FAIRNESS_REQUESTED = "monitoring.fairness_requested"
    OVERLAY_VIEW = "overlay.view"
    PATIENT_CHANGE = "patient.change"
    REPORT_DOWNLOADED = "report.downloaded"
    REPORT_WEBHOOK = "report.webhook"
    REPORT_WEBHOOK_ATTEMPT = "report.webhook_attempt"  # the claim, committed before the POST
    RESULT_ACKNOWLEDGE = "result.acknowledge"
    RESULT_ESCALATED = "result.escalated"
    RESULT_NOTIFIED = "result.notified"
    RESULT_NOTIFY_FAILED = "result.notify_failed"
    ROLE_CHANGE = "role.change"
    ROLE_PERMISSIONS_CHANGE = "role.permissions_change"
    USER_ACTIVATE = "user.activate"
    USER_CHANGE = "user.change"
    USER_CREATE = "user.create"
    USER_DEACTIVATE = "user.deactivate"
    USER_PASSWORD_SET = "user.password_set"
    BENCH_BULK = "bench.bulk"  # the audit benchmark's throwaway database only
    BENCH_WRITE = "bench.write"


def _digest(prev_hash: str, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def event_payload(e: AuditEvent) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "actor": e.actor_label, "action": e.action, "object_type": e.object_type,
            "object_id": e.object_id, "request_id": e.request_id, "ip": e.ip, "details": e.details}


def audit_log(*, actor, action: AuditAction, object_type: str, object_id: str | int,
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
            action=str(action), object_type=object_type, object_id=str(object_id),
            request_id=current_request_id.get(), ip=current_ip.get(), details=details or {}, prev_hash=prev,
        )
        event.hash = _digest(prev, event_payload(event))
        event.save()
        return event


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    """The hash an event must carry given its predecessor's (for writers that build rows in bulk)."""
    return _digest(prev_hash, event_payload(event))


# Checkpoints: the chain alone cannot show its newest events deleted, nor a row rewritten with every hash after it
# recomputed (both leave a valid, different chain). A signed note of the head, kept outside the database, can.

@dataclass(frozen=True)
class Checkpoint:
    seq: int
    event_id: int | None  # None: the chain was empty
    hash: str
    count: int
    at: str
    sig: str

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "event_id": self.event_id, "hash": self.hash, "count": self.count, "at": self.at}


def _checkpoint_key() -> bytes:
    """ECGAPP_AUDIT_KEY; without it, a key derived from SECRET_KEY (anyone who reads the settings can then forge)."""
    if settings.ECG_AUDIT_KEY:
        return settings.ECG_AUDIT_KEY.encode()
    if not settings.DEBUG and not settings.DEMO_MODE:
        log.warning("ECGAPP_AUDIT_KEY is not set: audit checkpoints are signed with a key derived from SECRET_KEY; "
                    "set a dedicated key that the database's administrators cannot read.")
    return hashlib.sha256(b"ecgapp-audit-checkpoint:" + settings.SECRET_KEY.encode()).digest()


def _sign(body: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(), hashlib.sha256).hexdigest()


def _checkpoints_path() -> Path:
    return Path(settings.ECG_AUDIT_CHECKPOINTS)


def audit_checkpoint() -> Checkpoint:
    """Append a signed checkpoint of the chain's head (last event id, its hash, the count up to it) to the file."""
    key = _checkpoint_key()
    path = _checkpoints_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        # One writer at a time (beat and `manage.py audit_checkpoint`), so sequence numbers never repeat.
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        lines = [line for line in f.read().splitlines() if line.strip()]
        seq = 1
        if lines:
            try:
                seq = int(json.loads(lines[-1])["seq"]) + 1
            except (ValueError, KeyError, TypeError):
                seq = len(lines) + 1
        head = AuditEvent.objects.order_by("-id").values_list("id", "hash").first()
        event_id, head_hash = head if head else (None, GENESIS)
        count = AuditEvent.objects.filter(id__lte=event_id).count() if event_id is not None else 0
        body = {"seq": seq, "event_id": event_id, "hash": head_hash, "count": count,
                "at": timezone.now().isoformat()}
        cp = Checkpoint(**body, sig=_sign(body, key))
        f.seek(0, 2)
        f.write(json.dumps(body | {"sig": cp.sig}, sort_keys=True) + "\n")
        f.flush()
    checkpoint_log.info("audit checkpoint %s", json.dumps(body | {"sig": cp.sig}, sort_keys=True))
    return cp


def _checkpoints_read(key: bytes) -> tuple[list[Checkpoint], str | None]:
    """The file's checkpoints in order, or the first one that is unreadable or not signed with the key."""
    checkpoints: list[Checkpoint] = []
    text = _checkpoints_path().read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            cp = Checkpoint(seq=int(raw["seq"]), event_id=None if raw["event_id"] is None else int(raw["event_id"]),
                            hash=str(raw["hash"]), count=int(raw["count"]), at=str(raw["at"]), sig=str(raw["sig"]))
        except (ValueError, KeyError, TypeError):
            return checkpoints, f"checkpoint file line {lineno} unreadable"
        if not hmac.compare_digest(_sign(cp.body(), key), cp.sig):
            return checkpoints, f"checkpoint {cp.seq} signature invalid"
        expected = checkpoints[-1].seq + 1 if checkpoints else cp.seq
        if cp.seq != expected:
            return checkpoints, f"checkpoint {expected} missing from the file (next is {cp.seq})"
        checkpoints.append(cp)
    return checkpoints, None


def audit_verify() -> tuple[bool, int, str]:
    """Walk the chain and check it against every checkpoint; returns (ok, events checked, message naming the
    first problem). Without a checkpoint file only the chain is checked, and the message says so."""
    checkpoints: list[Checkpoint] = []
    if _checkpoints_path().exists():
        checkpoints, problem = _checkpoints_read(_checkpoint_key())
        if problem:
            return False, 0, problem
    by_event: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        if cp.event_id is not None:
            by_event.setdefault(cp.event_id, []).append(cp)
    prev, n, last_id = GENESIS, 0, None
    last_confirmed: int | None = None  # the newest event a checkpoint vouched for
    # A row rewritten behind the triggers may have moved on disk: walk strictly by id.
    for e in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        n += 1
        if e.prev_hash != prev or _digest(prev, event_payload(e)) != e.hash:
            return False, n, f"audit event {e.id} ({e.action}) does not match the chain"
        for cp in by_event.pop(e.id, ()):
            if cp.hash != e.hash:
                where = f"after event {last_confirmed}" if last_confirmed is not None else "up to it"
                return False, n, (f"event {e.id} rewritten: checkpoint {cp.seq} hash differs "
                                  f"(an event {where} was changed and the chain re-hashed)")
            if cp.count != n:
                return False, n, (f"events before event {e.id} deleted or inserted: checkpoint {cp.seq} "
                                  f"counted {cp.count}, the chain has {n}")
            last_confirmed = e.id
        prev, last_id = e.hash, e.id
    # What is left names events the walk never met: the chain's tail is gone, or the event itself is.
    for cp in checkpoints:
        if cp.event_id not in by_event:
            continue
        if last_id is None or cp.event_id > last_id:
            return False, n, (f"events after event {last_id} deleted: checkpoint {cp.seq} names event "
                              f"{cp.event_id} ({cp.count} events), the chain ends at event {last_id} ({n} events)")
        return False, n, f"event {cp.event_id} deleted: checkpoint {cp.seq} names it"
    if not checkpoints:
        return True, n, f"{n} audit events verified; {NO_CHECKPOINTS}"
    return True, n, f"{n} audit events verified against {len(checkpoints)} checkpoints (newest: {checkpoints[-1].at})"
