"""Stored monitoring reports (summary numbers in rows, the big HTML as a file) and the alerts they raise."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReportRun(models.Model):
    """What every report shares: its state for the progress indicator, who asked for it, and its window."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    # None: the periodic schedule; a user: run on demand from the compliance pages.
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    model_version = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict)  # the settings the report ran with, so old reports stay readable

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)


class DriftReport(ReportRun):
    class Outcome(models.TextChoices):
        PENDING = "", "Pending"
        NO_DRIFT = "no_drift", "No drift"
        DRIFT = "drift", "Drift"
        INSUFFICIENT = "insufficient", "Insufficient data"

    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True, default="")
    reference = models.CharField(max_length=64)  # "fold9" or "production:<days>d"
    n_current = models.PositiveIntegerField(default=0)  # predictions in the window
    n_compared = models.PositiveIntegerField(default=0)  # of those, the (sampled) rows compared
    n_reference = models.PositiveIntegerField(default=0)
    n_features = models.PositiveSmallIntegerField(default=0)
    n_drifted = models.PositiveSmallIntegerField(default=0)
    drift_share = models.FloatField(null=True, blank=True)
    html = models.FileField(upload_to="monitoring/drift/", blank=True)


class DriftFeature(models.Model):
    report = models.ForeignKey(DriftReport, on_delete=models.CASCADE, related_name="features")
    feature = models.CharField(max_length=32)
    kind = models.CharField(max_length=12)  # "numerical" | "categorical"
    method = models.CharField(max_length=16)  # Evidently's stattest: "ks", "chisquare"
    p_value = models.FloatField(null=True)  # None when the feature had too few values to test
    threshold = models.FloatField()  # the per-feature significance level (Bonferroni-corrected)
    statistic = models.FloatField(null=True)  # effect size: KS D, or total variation distance for categories
    drifted = models.BooleanField(default=False)
    n_current = models.PositiveIntegerField(default=0)  # non-missing values compared
    current_summary = models.CharField(max_length=64, blank=True)  # median / top category, for people
    reference_summary = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-drifted", "p_value", "feature"]
        constraints = [models.UniqueConstraint(fields=["report", "feature"], name="one_row_per_drift_feature")]


class FairnessReport(ReportRun):
    class Outcome(models.TextChoices):
        PENDING = "", "Pending"
        OK = "ok", "Within thresholds"
        BREACH = "breach", "Threshold breached"
        INSUFFICIENT = "insufficient", "Insufficient data"

    outcome = models.CharField(max_length=12, choices=Outcome.choices, blank=True, default="")
    n_predictions = models.PositiveIntegerField(default=0)
    n_reviewed = models.PositiveIntegerField(default=0)


class FairnessMetric(models.Model):
    """One rate for one group: urgent-recommendation rate, TPR / FPR from reviews, or AUC on fold 9."""

    class Status(models.TextChoices):
        OK = "ok", "Measured"
        TOO_SMALL = "too_small", "Group too small"

    report = models.ForeignKey(FairnessReport, on_delete=models.CASCADE, related_name="metrics")
    dimension = models.CharField(max_length=16)  # "sex" | "age_band" | "sex_age"
    group = models.CharField(max_length=32)
    metric = models.CharField(max_length=16)  # "urgent_rate" | "tpr" | "fpr" | "auc"
    n = models.PositiveIntegerField()  # the rate's denominator (group size for that metric)
    events = models.PositiveIntegerField(null=True)  # the numerator, where the metric is a proportion
    value = models.FloatField(null=True)
    ci_low = models.FloatField(null=True)
    ci_high = models.FloatField(null=True)
    status = models.CharField(max_length=10, choices=Status.choices)

    class Meta:
        ordering = ["metric", "dimension", "group"]


class FairnessComparison(models.Model):
    """A disparity between the groups of one dimension (parity ratio, equal-opportunity difference)."""

    report = models.ForeignKey(FairnessReport, on_delete=models.CASCADE, related_name="comparisons")
    dimension = models.CharField(max_length=16)
    metric = models.CharField(max_length=32)
    value = models.FloatField(null=True)  # None when fewer than two groups were large enough
    ci_low = models.FloatField(null=True)
    ci_high = models.FloatField(null=True)
    threshold = models.FloatField()
    lowest_group = models.CharField(max_length=32, blank=True)
    highest_group = models.CharField(max_length=32, blank=True)
    breached = models.BooleanField(default=False)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["metric", "dimension"]


class MonitoringAlert(models.Model):
    """A breached threshold: one row per report and metric, shown to compliance and reviewers, and emailed."""

    class Kind(models.TextChoices):
        DRIFT = "drift", "Drift"
        FAIRNESS = "fairness", "Fairness"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    drift_report = models.ForeignKey(DriftReport, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="alerts")
    fairness_report = models.ForeignKey(FairnessReport, null=True, blank=True, on_delete=models.CASCADE,
                                        related_name="alerts")
    metric = models.CharField(max_length=48)
    value = models.FloatField(null=True)
    threshold = models.FloatField(null=True)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    emailed_to = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["drift_report", "metric"], name="one_alert_per_drift_report_metric"),
            models.UniqueConstraint(fields=["fairness_report", "metric"],
                                    name="one_alert_per_fairness_report_metric"),
        ]

    @property
    def headline(self) -> str:
        """The message without its itemised list (a drift alert names every drifted feature), for the banner
        shown on every page; the full message is on the monitoring pages."""
        head, sep, _ = self.message.partition(": ")
        return head + "." if sep and len(head) >= 20 else self.message

    @property
    def report(self) -> DriftReport | FairnessReport:
        return self.drift_report or self.fairness_report


class WorkerHeartbeat(models.Model):
    """One row per live Celery worker, refreshed by a thread in the worker (monitoring.workers). Readiness reads
    it: no fresh row for the inference queue means no worker is running, whatever the broker."""

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    # When this worker last took a task off the queue (None: not yet).
    last_task_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.hostname} (pid {self.pid})"


class CalibrationVersion(models.Model):
    """Temperatures and thresholds refitted on this site's reviewed results (training.site_calibration), proposed,
    then activated by compliance staff. While one is active, every new prediction of its model uses it and records
    its version; with none active the manifest's own calibration (version "manifest") applies."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    version = models.CharField(max_length=32)  # "site-3", unique per model
    model_version = models.CharField(max_length=64, db_index=True)
    # The calibration this one was fitted over and compared with (None: the manifest's).
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PROPOSED, db_index=True)
    # Manifest-shaped: {"method", "folds", head: {"temperature": [...], "threshold": [...], "operating_points"}}.
    # Never changed after creation: re-activating a version (a rollback) restores exactly these numbers.
    calibration = models.JSONField()
    # One row per label: counts, refit or kept (and why), sensitivity/specificity with 90 % CI before and after.
    labels = models.JSONField(default=list)
    n_outcomes = models.PositiveIntegerField(default=0)  # reviewed results the fit read
    outcomes_from = models.DateTimeField(null=True, blank=True)
    outcomes_to = models.DateTimeField(null=True, blank=True)
    min_count = models.PositiveIntegerField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # The calibration in force when this one was activated (None: the manifest's): a rollback restores it.
    replaced = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("manage_calibration", "Can propose, activate and roll back site calibrations")]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "version"], name="one_calibration_version_name"),
            # Two active versions would leave it to chance which one a prediction uses.
            models.UniqueConstraint(fields=["model_version"], condition=models.Q(status="active"),
                                    name="one_active_calibration_per_model"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} calibration {self.version} ({self.status})"

    @property
    def parent_version(self) -> str:
        return self.parent.version if self.parent else "manifest"

    @property
    def replaced_version(self) -> str:
        return self.replaced.version if self.replaced else "manifest"

    @property
    def n_refit(self) -> int:
        return sum(1 for row in self.labels if row.get("refit"))


class ModelFile(models.Model):
    """One file of a registered model version (a member's weights, the manifest, the calibration, reports), kept
    in the database by its sha256 so that every web and worker process, on any machine, can put the same bytes on
    its own disk (monitoring.registry); shared by versions whose files are the same."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.PositiveBigIntegerField()
    content = models.BinaryField()


class ModelVersion(models.Model):
    """A model the site can serve: weights + manifest + calibration + evaluation reports (monitoring.registry).

    candidate (imported, verified) -> serving (promoted with sign-off) -> retired (replaced or rolled back); a
    retired version can be promoted again. A candidate or retired version can be put in shadow (at most one at a
    time): it runs beside the serving model on every new ECG, on its own queue, and its outputs are stored as
    ShadowPrediction rows that no clinical page or API reads (monitoring.shadow); promoting it serves it."""

    class State(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        SHADOW = "shadow", "Shadow"
        SERVING = "serving", "Serving"
        RETIRED = "retired", "Retired"

    class Source(models.TextChoices):
        IMAGE = "image", "Shipped in the image"
        IMPORT = "import", "Imported export"

    version = models.CharField(max_length=64, unique=True)  # the manifest's model_version
    state = models.CharField(max_length=9, choices=State.choices, default=State.CANDIDATE, db_index=True)
    source = models.CharField(max_length=6, choices=Source.choices)
    manifest = models.JSONField()
    files = models.JSONField()  # {file name: sha256}: every file of the version (ModelFile rows)
    reports = models.JSONField(default=dict)  # {file name: JSON}: fold9_report.json, evaluation reports, run records
    git_commit = models.CharField(max_length=64)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    imported_at = models.DateTimeField(default=timezone.now)
    serving_since = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-imported_at", "-id"]
        permissions = [("manage_models", "Can import, promote and roll back model versions")]
        constraints = [
            # Two serving versions would leave it to chance which one a prediction uses.
            models.UniqueConstraint(fields=["state"], condition=models.Q(state="serving"),
                                    name="one_serving_model_version"),
            # One shadow: each new ECG costs one shadow analysis, and the comparison is of one pair.
            models.UniqueConstraint(fields=["state"], condition=models.Q(state="shadow"),
                                    name="one_shadow_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.state})"

    @property
    def fold9(self) -> dict:
        return (self.manifest.get("metrics_fold9") or {})

    @property
    def fold9_macro_auc(self) -> float | None:
        return self.fold9.get("superclass_macro_auc")


class ModelChange(models.Model):
    """A promotion or rollback: requested and signed by one compliance user, applied at once or, under the two-person
    rule (ECGAPP_MODEL_TWO_PERSON), when a second one approves. Never deleted: the model's history."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promotion"
        ROLLBACK = "rollback", "Rollback"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a second sign-off"
        APPLIED = "applied", "Applied"
        WITHDRAWN = "withdrawn", "Withdrawn"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING, db_index=True)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="changes")  # to be served
    replaced = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField()
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=models.Q(status="pending"),
                                    name="one_pending_model_change"),
        ]


class ShadowPrediction(models.Model):
    """What a shadow version (ModelVersion in state "shadow") made of an ECG the serving model analysed: stored beside
    the serving Prediction for the comparison page (monitoring.shadow), never shown to clinicians nor used for
    actions. One per version and serving prediction (the shadow task is idempotent)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="shadow_predictions")
    prediction = models.ForeignKey("clinical.Prediction", on_delete=models.CASCADE, related_name="+")
    calibration_version = models.CharField(max_length=32, blank=True, default="")
    superclass = models.JSONField()  # {"NORM": p, ...} under the shadow version's own calibration
    statements = models.JSONField()
    flagged = models.JSONField(default=list)  # ["superclass:MI", "statements:AFIB", ...] at its own thresholds
    top_urgency = models.CharField(max_length=10)
    rule_ids = models.JSONField(default=list)  # the rule ids of its ranked actions
    needs_review = models.BooleanField(default=False)
    inference_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["version", "prediction"], name="one_shadow_prediction")]
