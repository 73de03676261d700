"""Settings shared by every environment; values that vary come from ecgapp.env."""
from __future__ import annotations

import os

from ecgapp.env import BASE_DIR, database_config, read_env

ENV = read_env()

SECRET_KEY = ENV.secret_key or "insecure-local-development-key-not-for-production"
DEBUG = ENV.debug
ALLOWED_HOSTS = ENV.allowed_hosts
CSRF_TRUSTED_ORIGINS = ENV.csrf_trusted_origins
DEMO_MODE = ENV.demo_mode

# Prometheus multiprocess mode: every web and worker process writes its samples here and /metrics merges them.
# prometheus_client reads this variable when it is first imported, which happens after settings load.
PROMETHEUS_MULTIPROC_DIR = ENV.prometheus_dir or ENV.data_dir / "prometheus"
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(PROMETHEUS_MULTIPROC_DIR))

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
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "clinical.middleware.RefuseNulBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
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

ENV.data_dir.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": database_config(ENV.database_url, ENV.data_dir / "ecgapp.sqlite3", ENV.db_conn_max_age)}
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
STATIC_ROOT = ENV.data_dir / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# WhiteNoise serves static files from the app itself (no separate web server needed); the finders let the
# quick start and tests serve them without a collectstatic step.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = ENV.data_dir / "media"

# Uploads: clinical.intake.limits.MAX_UPLOAD_BYTES (32 MiB) per file, and the same for the API's JSON body, which
# is one ECG document (Django counts only the non-file part of a multipart body against this). Written out rather
# than imported, so that settings import no app code; tests/ecgapp checks that the two agree.
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# One handler that keeps at most the per-file limit (+1 byte, so the size check still sees an over-large file)
# and only counts the rest: a 100 MB upload costs neither 100 MB of memory nor a temporary file.
FILE_UPLOAD_HANDLERS = ["clinical.forms.CappedUploadHandler"]

# Celery: Redis when REDIS_URL is set, else a filesystem broker that needs no server (embedded default).
if ENV.redis_url:
    CELERY_BROKER_URL = ENV.redis_url
    # "priority": a worker takes from its queues in the order its -Q names them, so "inference,evidence" runs
    # evidence only when no analysis waits (kombu's default round-robin would alternate them).
    # https://docs.celeryq.dev/en/stable/userguide/routing.html#redis-message-priorities
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
else:
    _broker = ENV.data_dir / "broker"
    for _sub in ("out", "processed", "control"):
        (_broker / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(_broker / "out"),
                                       "data_folder_out": str(_broker / "out"),
                                       "processed_folder": str(_broker / "processed"),
                                       # Exchange tables; kombu's default is ./control in the working directory.
                                       "control_folder": str(_broker / "control"),
                                       "store_processed": False,
                                       # Seconds between polls of the folder: the upload-to-result latency floor.
                                       "polling_interval": 0.1}
CELERY_TASK_ALWAYS_EAGER = False

# Unacknowledged urgent results raise one alert and one email per level after these many minutes.
ECG_ESCALATE_IMMEDIATE_MIN = ENV.escalate_immediate_min
ECG_ESCALATE_URGENT_MIN = ENV.escalate_urgent_min
ECG_SITE_URL = ENV.site_url
EMAIL_BACKEND = ENV.email_backend
DEFAULT_FROM_EMAIL = ENV.default_from_email
EMAIL_HOST = ENV.email_host
EMAIL_PORT = ENV.email_port
EMAIL_HOST_USER = ENV.email_host_user
EMAIL_HOST_PASSWORD = ENV.email_host_password
EMAIL_USE_TLS = ENV.email_use_tls
EMAIL_TIMEOUT = ENV.email_timeout_s
# An immediate result notifies at once (banner, e-mail to reviewers, and this webhook when set).
ECG_NOTIFY_WEBHOOK_URL = ENV.notify_webhook_url
ECG_NOTIFY_WEBHOOK_TIMEOUT_S = ENV.notify_webhook_timeout_s
# A confirmed reading is announced to this webhook when set (clinical.interpretations.report_webhook_send).
ECG_REPORT_WEBHOOK_URL = ENV.report_webhook_url

# Monitoring (see ecgapp.env for what each means).
ECG_DRIFT_WINDOW_HOURS = ENV.drift_window_hours
ECG_DRIFT_REFERENCE = ENV.drift_reference
ECG_DRIFT_MIN_ROWS = ENV.drift_min_rows
ECG_DRIFT_MAX_ROWS = ENV.drift_max_rows
ECG_DRIFT_ALPHA = ENV.drift_alpha
ECG_FAIRNESS_WINDOW_DAYS = ENV.fairness_window_days
ECG_FAIRNESS_AGE_BANDS = ENV.fairness_age_bands
ECG_FAIRNESS_MIN_GROUP = ENV.fairness_min_group
ECG_FAIRNESS_PARITY_MIN_RATIO = ENV.fairness_parity_min_ratio
ECG_FAIRNESS_EO_MAX_DIFFERENCE = ENV.fairness_eo_max_difference
ECG_ALERT_REPEAT_HOURS = ENV.alert_repeat_hours
ECG_WORKER_METRICS_PORT = ENV.worker_metrics_port
ECG_METRICS_ALLOW = ENV.metrics_allow
ECG_METRICS_TOKEN = ENV.metrics_token
ECG_WORKER_STALE_SECONDS = ENV.worker_stale_seconds
ECG_QUEUE_MAX_WAIT_SECONDS = ENV.queue_max_wait_seconds
# Idle timeout: the session's own expiry, slid forward by clinical.auth.SessionLifetimeMiddleware; and a hard limit.
SESSION_COOKIE_AGE = ENV.session_idle_minutes * 60
ECG_SESSION_MAX_AGE = ENV.session_max_hours * 3600
# Signed checkpoints of the audit chain's head, outside the database (clinical.audit.audit_checkpoint).
ECG_AUDIT_KEY = ENV.audit_key
ECG_AUDIT_CHECKPOINTS = ENV.audit_checkpoints

ECG_WEIGHTS_DIR = ENV.weights_dir or str(BASE_DIR / "mlcore" / "weights")
ECG_TORCH_THREADS = ENV.torch_threads
PTBXL_DIR = ENV.ptbxl_dir

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["clinical.api.auth.ApiTokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["clinical.api.auth.PerTokenThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": ENV.api_rate},
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
CACHES = ({"default": {"BACKEND": "ecgapp.cache.PooledRedisCache", "LOCATION": ENV.redis_url}}
          if ENV.redis_url else
          {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
