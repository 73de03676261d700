"""Clinical records: patients, ECGs, inference jobs, predictions, findings, recommendations, audit events."""
from __future__ import annotations

import uuid

import numpy as np
from django.conf import settings
from django.db import models
from django.utils import timezone

from clinical import compact, recommend
from mlcore.calibration import MANIFEST_CALIBRATION
from mlcore.preprocess import WINDOW_S
from mlcore.window import crop


class Patient(models.Model):
    class Sex(models.TextChoices):
        MALE = "M", "Male"
        FEMALE = "F", "Female"
        UNKNOWN = "U", "Unknown"

    # Pseudonymous: the clinic's own key, never a name or national identifier.
    pseudonym = models.CharField(max_length=64, unique=True)
    # None: the age is unknown (said so explicitly at upload), as "U" is for sex.
    age = models.PositiveSmallIntegerField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.pseudonym


class EcgRecord(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="ecgs")
    # Age at acquisition: the patient's row holds the latest value, each ECG keeps its own.
    age_at_ecg = models.PositiveSmallIntegerField(null=True, blank=True)
    # Sex as given with this ECG ("U": the uploader said unknown). Pages, API and monitoring read this, not the
    # patient's row, which a later upload may change.
    sex_at_ecg = models.CharField(max_length=1, choices=Patient.Sex.choices)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ecgs")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    source_format = models.CharField(max_length=32)  # "wfdb", "csv", "json" or a clinical.intake format
    source_files = models.JSONField(default=list)
    upload_sha256 = models.CharField(max_length=64)
    fs = models.FloatField()
    n_samples = models.PositiveIntegerField()
    # (12, n) float32 millivolts in standard lead order, at the original sampling rate, stored compactly as
    # `signal_encoding` says (clinical.compact: the device's int16 codes, else zlib'd float32; lossless either way).
    # Read it with signal_array(); write it with signal_fields().
    signal = models.BinaryField()
    # db_default: rows written outside the ORM (bench_monitoring's COPY) are raw float32, as before issue 17.
    signal_encoding = models.CharField(max_length=16, default=compact.FLOAT32, db_default=compact.FLOAT32)
    quality = models.JSONField(default=dict)
    # Simple signal features measured at intake (mlcore.features), compared with the fold-9 reference for drift.
    features = models.JSONField(default=dict)
    # What an exported file says besides the waveform (clinical.intake): {"device", "acquired", "statements",
    # "measurements"}; shown on the result page as the device's own reading, beside ours.
    device = models.JSONField(default=dict, blank=True)
    intake_notes = models.JSONField(default=list, blank=True)  # e.g. "III, aVR, aVL, aVF derived from I and II"
    # This system's measurements of the analysed window (clinical.measurements.ecg_measurements: mlcore.measure's
    # values, reasons, convention and version, fiducials, median beats); {} for ECGs stored before they were measured.
    measurements = models.JSONField(default=dict, blank=True)

    class WindowChosenBy(models.TextChoices):
        QUALITY = "quality", "cleanest 10 s by signal quality"  # mlcore.window.choose_window
        USER = "user", "chosen by the user"  # mlcore.window.user_window, a re-analysis
        # Records stored before windows were chosen: the model read the central 10 s (mlcore.preprocess.fit_window).
        CENTRE = "centre", "central 10 s"

    # The 10 s the model, the quality report, the intake features and the drawing read: [start, start + 10 s) of
    # the stored record (all of it when it is no longer). The full record stays in `signal`.
    window_start_s = models.FloatField(default=0.0)
    window_chosen_by = models.CharField(max_length=8, choices=WindowChosenBy.choices, default=WindowChosenBy.QUALITY)
    # A user-picked window of an earlier ECG is a new record (same patient and signal), so that the first result,
    # perhaps already reviewed and acknowledged, stays as it was.
    reanalysis_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="reanalyses")

    class Meta:
        ordering = ["-uploaded_at"]
        # A bulk import asks, for each file, whether this uploader already stored these bytes (clinical.imports).
        indexes = [models.Index(fields=["uploaded_by", "upload_sha256"], name="ecg_uploader_sha256")]
        permissions = [
            ("upload_ecg", "Can upload ECGs"),
            ("view_all_ecgs", "Can see every ECG, not only own uploads"),
            ("acknowledge_result", "Can acknowledge urgent results"),
            ("view_audit", "Can read and export the audit trail"),
            ("view_monitoring", "Can read drift, fairness and model card pages"),
            ("use_api", "Can use the integration API"),
        ]

    @property
    def is_synthetic_demo(self) -> bool:
        """A demo ECG made by clinical.demo (seed_demo names its uploads DEMO-NNNN-synthetic-<case>.json)."""
        return self.patient.pseudonym.startswith("DEMO-") and any("-synthetic-" in f for f in self.source_files)

    @property
    def age_label(self) -> str:
        """The age as the pages show it: "63 y", or "age unknown" when the uploader said so."""
        return "age unknown" if self.age_at_ecg is None else f"{self.age_at_ecg} y"

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs

    def signal_array(self) -> np.ndarray:
        return compact.signal_decode(self.signal_encoding, self.signal, self.n_samples)

    @staticmethod
    def signal_fields(signal: np.ndarray) -> dict:
        """{"signal", "signal_encoding"} for a (12, n) float32 mV signal, as create() takes them."""
        encoding, data = compact.signal_encode(signal)
        return {"signal": data, "signal_encoding": encoding}

    def window_array(self) -> np.ndarray:
        """(12, m) mV: the analysed window's samples (what inference, explanation and the drawing read)."""
        return crop(self.signal_array(), self.fs, self.window_start_s)

    @property
    def window_end_s(self) -> float:
        return round(min(self.window_start_s + WINDOW_S, self.duration_s), 3)

    @property
    def analysed_window(self) -> dict:
        """{start_s, end_s, record_s, chosen_by}, as the API returns it."""
        return {"start_s": self.window_start_s, "end_s": self.window_end_s, "record_s": round(self.duration_s, 3),
                "chosen_by": self.window_chosen_by}

    def __str__(self) -> str:
        return f"ECG {self.public_id} ({self.patient})"


class InferenceJob(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    record = models.OneToOneField(EcgRecord, on_delete=models.CASCADE, related_name="job")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # False: the analysis stores findings and actions without Grad-CAM evidence (an archive's bulk import).
    with_evidence = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)


class Prediction(models.Model):
    record = models.OneToOneField(EcgRecord, on_delete=models.CASCADE, related_name="prediction")
    model_version = models.CharField(max_length=64)
    superclass = models.JSONField()  # {"NORM": p, ...} calibrated
    statements = models.JSONField()  # {"SR": p, ...} calibrated
    spread = models.JSONField()  # {"superclass": {...}, "statements": {...}} std across members
    # What each probability was judged against (mlcore.calibration.operating_points): {"method", "folds",
    # "superclass": {code: {"threshold", "name", "target", "achieved", "support", "validated"}}, "statements": ...}.
    # {} for results stored before it was kept: their thresholds are not known from the row.
    operating_points = models.JSONField(default=dict, blank=True)
    # The calibration the probabilities and thresholds came from: "manifest" (the model's own, fold 9) or a site
    # version (monitoring.CalibrationVersion); "" for results stored before it was kept (they used the manifest's).
    calibration_version = models.CharField(max_length=32, blank=True, default="")
    embedding = models.JSONField()  # penultimate features, for drift monitoring
    # Which findings have evidence: {"superclass:MI": {"row": 0, "lead_relevance": [12 shares]}}; the maps
    # themselves are in `evidence` (clinical.compact: uint8, zlib). Read them with evidence_for().
    explanations = models.JSONField(default=dict)
    evidence = models.BinaryField(default=b"", db_default=b"", blank=True)

    class EvidenceState(models.TextChoices):
        # The result is stored first; its evidence follows from the "evidence" queue (issue 17).
        PENDING = "pending", "Being computed"
        READY = "ready", "Ready"
        OFF = "off", "Not computed"  # the job asked for none (a bulk import)
        FAILED = "failed", "Could not be computed"

    evidence_state = models.CharField(max_length=8, choices=EvidenceState.choices, default=EvidenceState.OFF)
    evidence_ms = models.FloatField(null=True, blank=True)  # the backward pass and its storage, on the worker
    # When the evidence was (last) sent to its queue: the sweeper sends a pending one again when it is old.
    evidence_queued_at = models.DateTimeField(null=True, blank=True)
    evidence_at = models.DateTimeField(null=True, blank=True)
    needs_review = models.BooleanField(default=False)
    # The most urgent recommendation: "immediate" and "urgent" results wait in the reviewers' queue.
    top_urgency = models.CharField(max_length=10, default=recommend.ROUTINE, db_index=True)
    inference_ms = models.FloatField()
    # Indexed: monitoring reads windows of predictions by time.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def evidence_for(self, key: str) -> compact.Evidence | None:
        """Grad-CAM, per-lead maps and lead shares for a finding key ("superclass:MI"), or None without."""
        return compact.evidence_decode(self.explanations, self.evidence, key)

    @property
    def calibration_shown(self) -> str:
        # Results stored before the version was kept were calibrated with the manifest's numbers.
        return self.calibration_version or MANIFEST_CALIBRATION

    @property
    def awaits_review(self) -> bool:
        return self.top_urgency in recommend.AWAITS_REVIEW and not hasattr(self, "acknowledgement")


class Finding(models.Model):
    class Head(models.TextChoices):
        SUPERCLASS = "superclass", "Diagnostic class"
        STATEMENT = "statements", "Statement"
        # A criterion met by this system's measurements (mlcore.criteria): no probability, threshold or spread.
        MEASUREMENT = "measurement", "By measurement"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="findings")
    head = models.CharField(max_length=16, choices=Head.choices)
    code = models.CharField(max_length=16)
    display = models.CharField(max_length=128)
    probability = models.FloatField(null=True, blank=True)  # None: by measurement
    threshold = models.FloatField(null=True, blank=True)
    spread = models.FloatField(null=True, blank=True)
    needs_review = models.BooleanField(default=False)
    rank = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["rank"]

    @property
    def overlay_key(self) -> str:
        return f"{self.head}:{self.code}"


class Recommendation(models.Model):
    class Urgency(models.TextChoices):
        IMMEDIATE = recommend.IMMEDIATE, "Immediate"
        URGENT = recommend.URGENT, "Urgent"
        ROUTINE = recommend.ROUTINE, "Routine"

    class Kind(models.TextChoices):
        # A caveat qualifies the findings; it is never ranked first and sets no urgency (clinical.recommend).
        RULE = recommend.RULE, "Action"
        CAVEAT = recommend.CAVEAT, "Caveat"
        QUALITY = recommend.QUALITY, "Recording quality"
        FALLBACK = recommend.FALLBACK, "Fallback"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="recommendations")
    rank = models.PositiveSmallIntegerField()
    action = models.CharField(max_length=255)
    urgency = models.CharField(max_length=10, choices=Urgency.choices)
    reasoning = models.TextField()
    source = models.CharField(max_length=255)
    triggered_by = models.CharField(max_length=255)  # "statement:AFIB+measure:TACHY" for a combination rule
    confidence = models.FloatField()
    table_version = models.CharField(max_length=32)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.RULE)
    rule_id = models.CharField(max_length=64, blank=True, default="")  # the action table's rule id

    class Meta:
        ordering = ["rank"]


class Acknowledgement(models.Model):
    """A reviewer's sign-off on an urgent result; its per-finding verdicts are the outcome labels for fairness."""

    class Verdict(models.TextChoices):
        AGREE = "agree", "Agree"
        DISAGREE = "disagree", "Disagree"

    prediction = models.OneToOneField(Prediction, on_delete=models.PROTECT, related_name="acknowledgement")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField(default=timezone.now)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    # {"superclass:MI": "agree", "statements:AFIB": "disagree", "superclass:HYP": "missed"}
    finding_verdicts = models.JSONField(default=dict)
    # Per diagnostic class, what the review says of the model: "tp", "fp", "fn" or "tn" (absent when unknown).
    # Fixed at acknowledgement, so fairness reports read outcomes without re-deriving them.
    outcomes = models.JSONField(default=dict)
    note = models.TextField()


class Interpretation(models.Model):
    """A reviewer's confirmed reading of an ECG: a version beside the computer's (the Prediction's findings, which
    stay as they were), signed by re-authentication. Append-only: no code path updates or deletes a row (the
    database refuses UPDATE, migration 0019); an amendment is a new row, one version up, that supersedes the last
    and says why. The latest version is the one without a successor (``superseded_by``)."""

    class Status(models.TextChoices):
        FINAL = "final", "Final"
        AMENDED = "amended", "Amended"

    class Origin(models.TextChoices):
        MODEL = "model", "The model"
        MEASUREMENT = "measurement", "By measurement"
        REVIEWER = "reviewer", "The reviewer"

    class Action(models.TextChoices):
        ACCEPTED = "accepted", "Accepted"
        REMOVED = "removed", "Removed"
        ADDED = "added", "Added"

    record = models.ForeignKey(EcgRecord, on_delete=models.PROTECT, related_name="interpretations")
    version = models.PositiveSmallIntegerField()  # 1: the first confirmation; each amendment one more
    status = models.CharField(max_length=8, choices=Status.choices)
    # Every computer statement with what the reviewer did with it, then the reviewer's own:
    # [{"key": "statements:AFIB", "head", "code", "display", "origin", "action"}]; diffed against the computer's.
    statements = models.JSONField(default=list)
    free_text = models.TextField(blank=True)
    # The scalar measurements as confirmed ({key: value}) and, apart, those the reviewer set by caliper
    # ({key: {"reviewer": value, "computer": value or None}}): a reviewer's value is always recorded as theirs.
    measurements = models.JSONField(default=dict)
    measurement_overrides = models.JSONField(default=dict)
    # The serial comparison with the prior ECG at confirmation (clinical.comparison.ecg_compare); {} without one.
    comparison = models.JSONField(default=dict)
    prior_record = models.ForeignKey(EcgRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # The same structures as Acknowledgement's (clinical.reviews.review_outcomes), so that fairness monitoring and
    # site calibration read a confirmed reading as they read an acknowledgement.
    finding_verdicts = models.JSONField(default=dict)
    outcomes = models.JSONField(default=dict)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    confirmed_at = models.DateTimeField(default=timezone.now)
    signed_with = models.CharField(max_length=32)  # "password" or "api_token:<prefix>"
    reason = models.TextField(blank=True)  # why an amendment was made; blank for version 1
    supersedes = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="superseded_by")

    class Meta:
        ordering = ["record", "version"]
        constraints = [
            models.UniqueConstraint(fields=["record", "version"], name="one_interpretation_per_version"),
            # Version 1 is final and supersedes nothing; every later one is an amendment with a reason.
            models.CheckConstraint(
                condition=(models.Q(version=1, status="final", supersedes__isnull=True, reason="")
                           | (models.Q(version__gt=1, status="amended", supersedes__isnull=False)
                              & ~models.Q(reason=""))),
                name="interpretation_version_chain"),
        ]

    @property
    def kept_statements(self) -> list[dict]:
        """The statements of this reading (accepted and added), in order."""
        return [s for s in self.statements if s["action"] != self.Action.REMOVED]


class Alert(models.Model):
    """One escalation per result per level: an urgent result left unacknowledged past its limit."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="alerts")
    level = models.CharField(max_length=10)  # the urgency whose limit was passed
    created_at = models.DateTimeField(default=timezone.now)
    emailed_to = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prediction", "level"], name="one_alert_per_level")]


class ResultNotification(models.Model):
    """An immediate result announced at once: a banner for every reviewer until they open it or it is acknowledged,
    an e-mail to the reviewers and, when configured, a webhook. Escalation (Alert) still follows if it waits."""

    prediction = models.OneToOneField(Prediction, on_delete=models.CASCADE, related_name="notification")
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)  # e-mail and webhook tried (clinical.reviews)
    emailed_to = models.JSONField(default=list)
    # {"status": "sent" | "failed" | "off", "http_status": int, "error": str}
    webhook = models.JSONField(default=dict)
    # Reviewers who have opened the result since: their banner for it is gone.
    opened_by = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")


class AuditEvent(models.Model):
    """Append-only: written by services in the same transaction as the change; each row hashes the previous."""

    at = models.DateTimeField(default=timezone.now, db_index=True)  # set before hashing, never by save()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    actor_label = models.CharField(max_length=150)  # kept even if the account is renamed
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    request_id = models.CharField(max_length=64, blank=True)
    ip = models.GenericIPAddressField(null=True)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]


class ApiToken(models.Model):
    """A per-client API credential. Only a hash is stored; the secret is shown once when it is created."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)  # public part, for lookup and for people to name it
    digest = models.CharField(max_length=64)  # sha256 of the whole token
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key on submit: the same key with the same request returns the first ECG instead of
    a new one."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=100)
    record = models.ForeignKey(EcgRecord, on_delete=models.CASCADE, related_name="+")
    # SHA-256 of the request the key was first used with (clinical.services.submission_sha256): the same key with
    # another request is refused, never answered with this record. Blank for keys stored before it was kept.
    request_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_record_per_idempotency_key")]
