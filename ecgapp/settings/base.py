"""Settings shared by every environment. Every environment variable the app reads is read here, once, on one line,
with the typed helpers of ecgapp.env (healthchecks' settings.py style); the README's table lists them all.

Importing this module has no side effect: the folders it names (data, static, broker, metrics samples) are made by
ecgapp.startup when a process starts.
"""
from __future__ import annotations

from ecgapp.env import (
    BASE_DIR,
    app_data_dir,
    database_config,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_path,
    env_str,
    env_url,
    filesystem_broker_options,
)

# Development's stand-in key; production.py refuses to start with it.
DEVELOPMENT_SECRET_KEY = "insecure-local-development-key-not-for-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or DEVELOPMENT_SECRET_KEY
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
# Where the app keeps its state (SQLite, broker, media, the MLflow store): ECGAPP_DATA_DIR, default var/.
ECG_DATA_DIR = app_data_dir()
DEMO_MODE = env_bool("ECGAPP_DEMO", not DATABASE_URL)

# Prometheus multiprocess mode: every web and worker process writes its samples here and /metrics merges them.
# prometheus_client reads the variable when it is first imported; ecgapp.startup sets it from this setting.
PROMETHEUS_MULTIPROC_DIR = env_path("PROMETHEUS_MULTIPROC_DIR", ECG_DATA_DIR / "prometheus")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "clinical",
    "monitoring",
    "benchmarks",  # only its management commands (manage.py bench_*)
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "clinical.middleware.RefuseNulBytesMiddleware",
    "ecgapp.static_serving.StaticFilesMiddleware",  # WhiteNoise
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "clinical.middleware.RequestIdMiddleware",
    "clinical.middleware.SecurityHeadersMiddleware",
    "clinical.middleware.PrivateResponseMiddleware",
    "clinical.auth.SessionLifetimeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "ecgapp.urls"
WSGI_APPLICATION = "ecgapp.wsgi.application"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
        "clinical.context.site",
        "monitoring.context.alerts",
    ]},
}]

# Persistent connections suit gunicorn's long-lived workers; a thread-per-request server needs 0.
DATABASES = {"default": database_config(DATABASE_URL, ECG_DATA_DIR / "ecgapp.sqlite3",
                                        env_int("ECGAPP_DB_CONN_MAX_AGE", 60))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "clinical:ecg-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = ECG_DATA_DIR / "staticfiles"
# WhiteNoise serves static files from the app itself (no separate web server needed); the finders let the
# quick start and tests serve them without a collectstatic step.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = ECG_DATA_DIR / "media"

# Uploads: clinical.intake.limits.MAX_UPLOAD_BYTES (32 MiB) per file, and the same for the API's JSON body, which
# is one ECG document (Django counts only the non-file part of a multipart body against this). Written out rather
# than imported, so that settings import no app code; tests/ecgapp checks that the two agree.
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# One handler that keeps at most the per-file limit (+1 byte, so the size check still sees an over-large file)
# and only counts the rest: a 100 MB upload costs neither 100 MB of memory nor a temporary file.
FILE_UPLOAD_HANDLERS = ["clinical.forms.CappedUploadHandler"]

# Celery: Redis when REDIS_URL is set, else a filesystem broker that needs no server (embedded default).
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # "priority": a worker takes from its queues in the order its -Q names them, so "inference,evidence" runs
    # evidence only when no analysis waits (kombu's default round-robin would alternate them).
    # https://docs.celeryq.dev/en/stable/userguide/routing.html#redis-message-priorities
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(ECG_DATA_DIR / "broker")
CELERY_TASK_ALWAYS_EAGER = False

# Unacknowledged urgent results raise one alert and one email per level after these many minutes.
ECG_ESCALATE_IMMEDIATE_MIN = env_int("ECGAPP_ESCALATE_IMMEDIATE_MIN", 15)
ECG_ESCALATE_URGENT_MIN = env_int("ECGAPP_ESCALATE_URGENT_MIN", 60)
ECG_SITE_URL = env_str("ECGAPP_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Demo and development print emails to the console; production sets an SMTP backend.
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "ecg-ds@localhost")
# The SMTP backend's server; unused by the console and locmem backends.
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
# A mail server that does not answer must not hold a notification task for minutes.
EMAIL_TIMEOUT = env_int("DJANGO_EMAIL_TIMEOUT", 10)
# An immediate result notifies at once: banner, e-mail to reviewers, and a POST of JSON (ECG id, urgency, top
# action, link) to this webhook when set.
ECG_NOTIFY_WEBHOOK_URL = env_url("ECGAPP_NOTIFY_WEBHOOK_URL")
ECG_NOTIFY_WEBHOOK_TIMEOUT_S = env_float("ECGAPP_NOTIFY_WEBHOOK_TIMEOUT_S", 5.0)
# A confirmed (or amended) reading is POSTed here as JSON (ECG id, version, status, report links) for the EHR
# interface to fetch the FHIR/HL7 report (clinical.interpretations.report_webhook_send); empty: no webhook. Same
# timeout as the immediate-result one.
ECG_REPORT_WEBHOOK_URL = env_url("ECGAPP_REPORT_WEBHOOK_URL")
# A model promotion waits for a second compliance user's signature (monitoring.registry); a rollback does not.
ECG_MODEL_TWO_PERSON = env_bool("ECGAPP_MODEL_TWO_PERSON", True)
# A shadow version's analysis waits while serving work is in hand (an ECG arrived in the last QUIET_S seconds, one
# queued or being analysed, evidence being made), so that it never takes the serving path's CPU; after DEFER_MAX_S
# seconds of waiting it runs regardless.
ECG_SHADOW_QUIET_S = env_float("ECGAPP_SHADOW_QUIET_S", 10.0)
ECG_SHADOW_DEFER_MAX_S = env_float("ECGAPP_SHADOW_DEFER_MAX_S", 1800.0)
# Where each process writes the registered model versions' files it serves (monitoring.registry).
ECG_MODELS_DIR = ECG_DATA_DIR / "models"

# Drift: the last window of production is compared with the reference ("fold9", the distribution shipped with the
# model, or "production:<days>", the days before the window). Above max_rows the window is sampled; alpha is the
# family-wise false-alarm rate, shared out over the features (Bonferroni).
ECG_DRIFT_WINDOW_HOURS = env_int("ECGAPP_DRIFT_WINDOW_HOURS", 24)
ECG_DRIFT_REFERENCE = env_str("ECGAPP_DRIFT_REFERENCE", "fold9")
ECG_DRIFT_MIN_ROWS = env_int("ECGAPP_DRIFT_MIN_ROWS", 100)
ECG_DRIFT_MAX_ROWS = env_int("ECGAPP_DRIFT_MAX_ROWS", 20000)
ECG_DRIFT_ALPHA = env_float("ECGAPP_DRIFT_ALPHA", 0.01)
# Fairness: age bands are given by their edges, "40,65" -> <40, 40-65, >65.
ECG_FAIRNESS_WINDOW_DAYS = env_int("ECGAPP_FAIRNESS_WINDOW_DAYS", 30)
ECG_FAIRNESS_AGE_BANDS = [int(edge) for edge in env_list("ECGAPP_FAIRNESS_AGE_BANDS", ["40", "65"])]
ECG_FAIRNESS_MIN_GROUP = env_int("ECGAPP_FAIRNESS_MIN_GROUP", 30)
ECG_FAIRNESS_PARITY_MIN_RATIO = env_float("ECGAPP_FAIRNESS_PARITY_MIN_RATIO", 0.8)
ECG_FAIRNESS_EO_MAX_DIFFERENCE = env_float("ECGAPP_FAIRNESS_EO_MAX_DIFFERENCE", 0.1)
# A breach that persists raises an alert row per report, but is emailed again only after this long.
ECG_ALERT_REPEAT_HOURS = env_int("ECGAPP_ALERT_REPEAT_HOURS", 24)
# A Celery worker in its own container serves its processes' metrics on this port (0: off). Web nodes serve
# /metrics themselves; a worker on the same node as web needs none (they share the samples folder).
ECG_WORKER_METRICS_PORT = env_int("ECGAPP_WORKER_METRICS_PORT", 0)
# Who may read /metrics (web and worker port) and the API schema without logging in: these client addresses (none
# by default: behind a reverse proxy on the same host every request comes from loopback), and Prometheus sending
# `Authorization: Bearer <ECGAPP_METRICS_TOKEN>` (or the file ECGAPP_METRICS_TOKEN_FILE names).
ECG_METRICS_ALLOW = env_networks("ECGAPP_METRICS_ALLOW", [])
ECG_METRICS_TOKEN = env_str("ECGAPP_METRICS_TOKEN")
# /health/ready fails when no inference worker has written its heartbeat (every 5 s) for this long, or when the
# oldest queued ECG has waited this long while no worker took a job.
ECG_WORKER_STALE_SECONDS = env_int("ECGAPP_WORKER_STALE_SECONDS", 30)
ECG_QUEUE_MAX_WAIT_SECONDS = env_int("ECGAPP_QUEUE_MAX_WAIT_SECONDS", 300)
# A signed-in session ends after this long without a request (the session's own expiry, slid forward by
# clinical.auth.SessionLifetimeMiddleware), and after this long in all (re-login).
SESSION_COOKIE_AGE = env_int("ECGAPP_SESSION_IDLE_MINUTES", 30) * 60
ECG_SESSION_MAX_AGE = env_int("ECGAPP_SESSION_MAX_HOURS", 12) * 3600
# Signed checkpoints of the audit chain's head, outside the database (clinical.audit.audit_checkpoint). The key
# signs them (HMAC-SHA256); keep it where the database's administrators cannot read it. Unset: a key derived from
# DJANGO_SECRET_KEY, with a warning outside demo and debug.
ECG_AUDIT_KEY = env_str("ECGAPP_AUDIT_KEY")
ECG_AUDIT_CHECKPOINTS = env_path("ECGAPP_AUDIT_CHECKPOINTS", ECG_DATA_DIR / "audit-checkpoints.jsonl")

ECG_WEIGHTS_DIR = env_str("ECGAPP_WEIGHTS_DIR") or str(BASE_DIR / "mlcore" / "weights")
ECG_TORCH_THREADS = env_int("ECGAPP_TORCH_THREADS", 1)
PTBXL_DIR = env_str("PTBXL_DIR")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["clinical.api.auth.ApiTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["clinical.api.auth.PerTokenThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": env_str("ECGAPP_API_RATE", "600/min")},
    "EXCEPTION_HANDLER": "clinical.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ECG-DS integration API",
    "DESCRIPTION": "Submit 12-lead ECGs, poll analysis jobs, read calibrated findings and ranked actions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from this site (the sidecar package), so the docs work offline and under our
    # script-src 'self' policy; no validator badge (it would load an image from validator.swagger.io). Redoc is
    # not offered: its sidebar always loads a logo from cdn.redoc.ly, with no setting to turn that off.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}
# Throttle counters live in Redis when there is one, so every web process shares them.
CACHES = ({"default": {"BACKEND": "ecgapp.cache.PooledRedisCache", "LOCATION": REDIS_URL}}
          if REDIS_URL else
          {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})

# Django calls LOGGING_CONFIG in django.setup() before it imports any app: the one hook that every process (manage.py,
# gunicorn, Celery, pytest) passes after settings load and before django_prometheus creates its metrics, so the
# folders are made there, not when settings import. https://docs.djangoproject.com/en/5.2/topics/logging/#topic-logging-custom-configuration
LOGGING_CONFIG = "ecgapp.startup.process_start"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
