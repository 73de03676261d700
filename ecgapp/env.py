"""Typed helpers that read one environment variable each; ecgapp/settings/base.py reads every variable with them,
each on one line. Nothing here has a side effect: the folders the settings name are made by ecgapp.startup.

With no variable set, the app runs on an embedded default: SQLite, Celery over a filesystem broker, demo mode.
"""
from __future__ import annotations

import ipaddress
import os
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


def app_data_dir() -> Path:
    """Where the app keeps its state (SQLite, broker, media, the MLflow store): ECGAPP_DATA_DIR, default var/.

    Its own function so the training CLI (no Django) finds the same directory without reading the app's settings.
    """
    return Path(env_str("ECGAPP_DATA_DIR", str(BASE_DIR / "var")))


def env_path(name: str, default: Path) -> Path:
    """A folder or file path; unset or empty: ``default``."""
    return Path(env_str(name) or default)


def filesystem_broker_options(folder: Path) -> dict:
    """Celery's broker transport options for kombu's filesystem transport in ``folder`` (the embedded default's
    broker, which needs no server): producer and consumer share one message folder. ecgapp.startup makes the
    folders; kombu needs them to exist and does not make them."""
    return {"data_folder_in": str(folder / "out"), "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            # Exchange tables; kombu's default is ./control in the working directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
            # Seconds between polls of the folder: the upload-to-result latency floor.
            "polling_interval": 0.1}


def filesystem_broker_folders(options: dict) -> list[Path]:
    """The folders ``filesystem_broker_options`` names, to be made before the first message is sent or read."""
    return [Path(options[key]) for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")]
