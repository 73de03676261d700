# One image for every role; the command picks it (deploy/compose.yaml and deploy/k8s/ give each one):
#   web (default)      gunicorn ecgapp.wsgi:application -c gunicorn.conf.py
#   inference worker   celery -A ecgapp worker -Q inference --hostname inference@%h
#   monitoring worker  celery -A ecgapp worker -Q monitoring,celery,shadow --hostname monitoring@%h
#   beat               celery -A ecgapp beat --schedule /tmp/celerybeat-schedule
#   migrations         sh -c "python manage.py migrate --noinput && python manage.py setup_roles"
# Build from the repository root: docker build -t ecgapp:0.1.0 .
# tests/deploy/test_manifests.py checks this file (hadolint plus the project's own rules); keep them passing.

# ---- builder: a virtual environment with the pinned dependencies and the project, plus collected static files
# Base image: tag and digest pinned together; bump both (docker buildx imagetools inspect python:3.11.14-slim-bookworm).
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
# The CPU build of torch, from PyTorch's CPU index: the default index would pull a multi-GB CUDA build.
# Installed first, so that the project's own pin (torch==2.13.0) is already met and nothing else brings CUDA.
RUN python -m venv /opt/venv \
 && pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The other pinned dependencies, read from pyproject.toml alone (this layer is rebuilt only when it changes).
WORKDIR /app
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

# The project itself, at the path it keeps in the runtime stage (settings find templates/ and static/ beside the
# packages, and gunicorn reads ./gunicorn.conf.py).
COPY mlcore ./mlcore
COPY training ./training
COPY ecgapp ./ecgapp
COPY clinical ./clinical
COPY monitoring ./monitoring
COPY benchmarks ./benchmarks
COPY templates ./templates
COPY static ./static
COPY manage.py gunicorn.conf.py ./
RUN pip install --no-deps -e . && python -m compileall -q /app

# Static files, collected at build time into STATIC_ROOT (ECGAPP_DATA_DIR/staticfiles), which the runtime stage
# copies; WhiteNoise serves them. Production settings refuse to load without a secret key: a throwaway one is
# given to this one command only (never an ENV or ARG, and this stage is not part of the shipped image).
RUN DJANGO_SETTINGS_MODULE=ecgapp.settings.production ECGAPP_DATA_DIR=/var/lib/ecgapp \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus DJANGO_SECRET_KEY=collectstatic-only-not-a-secret \
    python manage.py collectstatic --noinput -v 0

# ---- runtime: the slim base, the venv and the app, run as an unprivileged user
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime

# Only non-secret defaults here: DJANGO_SECRET_KEY, DATABASE_URL and REDIS_URL come from the environment at run time.
# PROMETHEUS_MULTIPROC_DIR sits on /tmp (a tmpfs / emptyDir per container): the sample files are named by process
# id, so two containers must never share that directory.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH HOME=/tmp \
    DJANGO_SETTINGS_MODULE=ecgapp.settings.production ECGAPP_DATA_DIR=/var/lib/ecgapp \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# uid/gid 10001, numeric in USER below so that Kubernetes can enforce runAsNonRoot. The app code is owned by root
# (read-only to the app); only ECGAPP_DATA_DIR/media (report files, a volume in production) belongs to the app user.
RUN groupadd --system --gid 10001 ecgapp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin ecgapp \
 && mkdir -p /var/lib/ecgapp/media \
 && chown 10001:10001 /var/lib/ecgapp/media

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
COPY --from=builder /var/lib/ecgapp/staticfiles /var/lib/ecgapp/staticfiles
WORKDIR /app

USER 10001:10001
EXPOSE 8000
# Liveness of the web role; the compose file and the Kubernetes manifests give workers and beat their own checks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status != 200)"]
# gunicorn.conf.py sets up Prometheus multiprocess mode; GUNICORN_WORKERS / GUNICORN_BIND tune it.
CMD ["gunicorn", "ecgapp.wsgi:application", "-c", "gunicorn.conf.py"]
