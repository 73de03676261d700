"""Liveness and readiness for load balancers and orchestrators."""
from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from monitoring import workers
from monitoring.registry import serving_weights_dir


def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_broker() -> str | None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis"):
        import redis

        try:
            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
        except Exception as exc:  # any failure means not ready
            return f"broker: {exc}"
        return None
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    return None if folder.is_dir() else f"broker folder {folder} missing"


def ready(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker, an analysis worker and the model weights are all there; 503 naming what
    is not (monitoring.workers says when a worker counts as gone or stuck)."""
    problems = []
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
    except Exception as exc:
        problems.append(f"database: {exc}")
    if (err := _check_broker()) is not None:
        problems.append(err)
    try:
        problems.extend(workers.readiness_problems())
    except Exception as exc:  # the database is down: already said above
        if not problems:
            problems.append(f"workers: {exc}")
    model_version = None
    try:
        manifest = Path(serving_weights_dir()) / "manifest.json"
    except Exception as exc:  # the database is down (said above), or a stored model file is corrupt
        manifest = None
        if not problems:
            problems.append(f"model registry: {exc}")
    if manifest is None:
        pass
    elif not manifest.exists():
        problems.append("model weights: manifest.json missing")
    else:
        try:
            model_version = json.loads(manifest.read_text())["model_version"]
        except (ValueError, KeyError) as exc:
            problems.append(f"model weights: unreadable manifest ({exc})")
    status = 503 if problems else 200
    return JsonResponse({"status": "ok" if not problems else "unavailable", "problems": problems,
                         "model_version": model_version}, status=status)
