"""Every environment variable the project reads, in one place, with typed helpers.

With none set, the app runs on an embedded default: SQLite, Celery over a filesystem broker, demo mode.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


class ImproperlyConfiguredEnv(RuntimeError):
    pass


def env_str(name: str, default: str = "") -> str:
    """NAME, or the contents of the file NAME_FILE names (Docker / Kubernetes secrets mounted as files)."""
    if name in os.environ:
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfiguredEnv(f"{name}_FILE={path!r} cannot be read: {exc.strerror}.") from exc
    return default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a boolean (use 1/0, true/false).")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not an integer.") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r} is not a number.") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or CIDR blocks ("127.0.0.1,::1,10.0.0.0/8"); set but empty: none."""
    raw = os.environ.get(name)
    items = default if raw is None else [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return [ipaddress.ip_network(item, strict=False) for item in items]
    except ValueError as exc:
        raise ImproperlyConfiguredEnv(f"{name}={raw!r}: {exc}.") from exc


def env_url(name: str) -> str:
    """An http(s) URL, or empty: urllib would also open file:// and ftp:// URLs."""
    url = env_str(name).strip()
    if url and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname):
        raise ImproperlyConfiguredEnv(f"{name}={url!r} is not an http:// or https:// URL.")
    return url


# SQLite for several users at once (the embedded default serves a threaded web server and a worker process):
# - WAL: readers never wait for the writer and the writer never waits for readers;
# - IMMEDIATE: a transaction takes the write lock when it begins, so two transactions that read and then write
#   cannot deadlock (with DEFERRED, SQLite answers one of them "database is locked" at once, without waiting);
# - timeout: a writer waits up to 30 s for the lock (sqlite3's busy handler) instead of failing;
# - synchronous=NORMAL is durable across application crashes in WAL mode (SQLite's documented recommendation).
SQLITE_OPTIONS = {"timeout": 30, "transaction_mode": "IMMEDIATE",
                  "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"}


def database_config(url: str, default_sqlite: Path, conn_max_age: int = 60) -> dict:
    """DATABASES['default'] from a postgres:// URL, or SQLite when the URL is empty."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite), "OPTIONS": SQLITE_OPTIONS}
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfiguredEnv(f"DATABASE_URL scheme {u.scheme!r} is not supported (use postgres://).")
    options = {k: v[-1] for k, v in parse_qs(u.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(u.path.lstrip("/")) or "ecgapp",
        "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "",
        "PORT": str(u.port or ""),
        "CONN_MAX_AGE": conn_max_age,
        # A kept connection is checked before each request / task, so a database restart costs one reconnect,
        # not errors until the connection ages out.
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
    }


@dataclass(frozen=True)
class Env:
    secret_key: str
    debug: bool
    allowed_hosts: list[str]
    database_url: str
    redis_url: str
    data_dir: Path
    demo_mode: bool
    weights_dir: str
    torch_threads: int
    csrf_trusted_origins: list[str]
    ptbxl_dir: str
    escalate_immediate_min: int
    escalate_urgent_min: int
    site_url: str
    email_backend: str
    default_from_email: str
    email_host: str
    email_port: int
    email_host_user: str
    email_host_password: str
    email_use_tls: bool
    email_timeout_s: int
    notify_webhook_url: str
    notify_webhook_timeout_s: float
    report_webhook_url: str
    api_rate: str
    db_conn_max_age: int
    prometheus_dir: Path | None
    drift_window_hours: int
    drift_reference: str
    drift_min_rows: int
    drift_max_rows: int
    drift_alpha: float
    fairness_window_days: int
    fairness_age_bands: list[int]
    fairness_min_group: int
    fairness_parity_min_ratio: float
    fairness_eo_max_difference: float
    alert_repeat_hours: int
    worker_metrics_port: int
    metrics_allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    metrics_token: str
    worker_stale_seconds: int
    queue_max_wait_seconds: int
    session_idle_minutes: int
    session_max_hours: int
    audit_key: str
    audit_checkpoints: Path


def app_data_dir() -> Path:
    """Where the app keeps its state (SQLite, broker, media, the MLflow store): ECGAPP_DATA_DIR, default var/.

    Its own function so the training CLI (no Django) finds the same directory without reading the app's settings.
    """
    return Path(env_str("ECGAPP_DATA_DIR", str(BASE_DIR / "var")))


def read_env() -> Env:
    data_dir = app_data_dir()
    return Env(
        secret_key=env_str("DJANGO_SECRET_KEY"),
        debug=env_bool("DJANGO_DEBUG", False),
        allowed_hosts=env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"]),
        database_url=env_str("DATABASE_URL"),
        redis_url=env_str("REDIS_URL"),
        data_dir=data_dir,
        demo_mode=env_bool("ECGAPP_DEMO", not env_str("DATABASE_URL")),
        weights_dir=env_str("ECGAPP_WEIGHTS_DIR"),
        torch_threads=env_int("ECGAPP_TORCH_THREADS", 1),
        csrf_trusted_origins=env_list("DJANGO_CSRF_TRUSTED_ORIGINS", []),
        ptbxl_dir=env_str("PTBXL_DIR"),
        escalate_immediate_min=env_int("ECGAPP_ESCALATE_IMMEDIATE_MIN", 15),
        escalate_urgent_min=env_int("ECGAPP_ESCALATE_URGENT_MIN", 60),
        site_url=env_str("ECGAPP_SITE_URL", "http://127.0.0.1:8000").rstrip("/"),
        # Demo and development print emails to the console; production sets an SMTP backend.
        email_backend=env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
        default_from_email=env_str("DJANGO_DEFAULT_FROM_EMAIL", "ecg-ds@localhost"),
        # The SMTP backend's server (Django's EMAIL_* settings); unused by the console and locmem backends.
        email_host=env_str("DJANGO_EMAIL_HOST", "localhost"),
        email_port=env_int("DJANGO_EMAIL_PORT", 25),
        email_host_user=env_str("DJANGO_EMAIL_HOST_USER"),
        email_host_password=env_str("DJANGO_EMAIL_HOST_PASSWORD"),
        email_use_tls=env_bool("DJANGO_EMAIL_USE_TLS", False),
        # A mail server that does not answer must not hold a notification task for minutes.
        email_timeout_s=env_int("DJANGO_EMAIL_TIMEOUT", 10),
        # An immediate result is also POSTed here as JSON (ECG id, urgency, top action, link); empty: no webhook.
        notify_webhook_url=env_url("ECGAPP_NOTIFY_WEBHOOK_URL"),
        notify_webhook_timeout_s=env_float("ECGAPP_NOTIFY_WEBHOOK_TIMEOUT_S", 5.0),
        # A confirmed (or amended) reading is POSTed here as JSON (ECG id, version, status, report links) for the
        # EHR interface to fetch the FHIR/HL7 report; empty: no webhook. Same timeout as the immediate-result one.
        report_webhook_url=env_url("ECGAPP_REPORT_WEBHOOK_URL"),
        api_rate=env_str("ECGAPP_API_RATE", "600/min"),
        # Persistent connections suit gunicorn's long-lived workers; a thread-per-request server needs 0.
        db_conn_max_age=env_int("ECGAPP_DB_CONN_MAX_AGE", 60),
        prometheus_dir=Path(env_str("PROMETHEUS_MULTIPROC_DIR")) if env_str("PROMETHEUS_MULTIPROC_DIR") else None,
        # Drift: the last window of production is compared with the reference ("fold9", the distribution shipped
        # with the model, or "production:<days>", the days before the window). Above max_rows the window is
        # sampled; alpha is the family-wise false-alarm rate, shared out over the features (Bonferroni).
        drift_window_hours=env_int("ECGAPP_DRIFT_WINDOW_HOURS", 24),
        drift_reference=env_str("ECGAPP_DRIFT_REFERENCE", "fold9"),
        drift_min_rows=env_int("ECGAPP_DRIFT_MIN_ROWS", 100),
        drift_max_rows=env_int("ECGAPP_DRIFT_MAX_ROWS", 20000),
        drift_alpha=env_float("ECGAPP_DRIFT_ALPHA", 0.01),
        # Fairness: age bands are given by their edges, "40,65" -> <40, 40-65, >65.
        fairness_window_days=env_int("ECGAPP_FAIRNESS_WINDOW_DAYS", 30),
        fairness_age_bands=[int(v) for v in env_list("ECGAPP_FAIRNESS_AGE_BANDS", ["40", "65"])],
        fairness_min_group=env_int("ECGAPP_FAIRNESS_MIN_GROUP", 30),
        fairness_parity_min_ratio=env_float("ECGAPP_FAIRNESS_PARITY_MIN_RATIO", 0.8),
        fairness_eo_max_difference=env_float("ECGAPP_FAIRNESS_EO_MAX_DIFFERENCE", 0.1),
        # A breach that persists raises an alert row per report, but is emailed again only after this long.
        alert_repeat_hours=env_int("ECGAPP_ALERT_REPEAT_HOURS", 24),
        # A Celery worker in its own container serves its processes' metrics on this port (0: off). Web nodes
        # serve /metrics themselves; a worker on the same node as web needs none (they share the samples folder).
        worker_metrics_port=env_int("ECGAPP_WORKER_METRICS_PORT", 0),
        # Who may read /metrics (web and worker port) and the API schema without logging in: these client
        # addresses (none by default: behind a reverse proxy on the same host every request comes from loopback),
        # and Prometheus sending `Authorization: Bearer <ECGAPP_METRICS_TOKEN>` (or the file
        # ECGAPP_METRICS_TOKEN_FILE names).
        metrics_allow=env_networks("ECGAPP_METRICS_ALLOW", []),
        metrics_token=env_str("ECGAPP_METRICS_TOKEN"),
        # /health/ready fails when no inference worker has written its heartbeat (every 5 s) for this long, or when
        # the oldest queued ECG has waited this long while no worker took a job.
        worker_stale_seconds=env_int("ECGAPP_WORKER_STALE_SECONDS", 30),
        queue_max_wait_seconds=env_int("ECGAPP_QUEUE_MAX_WAIT_SECONDS", 300),
        # A signed-in session ends after this long without a request, and after this long in all (re-login).
        session_idle_minutes=env_int("ECGAPP_SESSION_IDLE_MINUTES", 30),
        session_max_hours=env_int("ECGAPP_SESSION_MAX_HOURS", 12),
        # Signs the audit chain's checkpoints (HMAC-SHA256); keep it where the database's administrators cannot
        # read it. Unset: a key derived from DJANGO_SECRET_KEY, with a warning outside demo and debug.
        audit_key=env_str("ECGAPP_AUDIT_KEY"),
        audit_checkpoints=Path(env_str("ECGAPP_AUDIT_CHECKPOINTS", str(data_dir / "audit-checkpoints.jsonl"))),
    )
