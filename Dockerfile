# One image for every role: web (gunicorn), Celery worker, Celery beat. Choose with the command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=ecgapp.settings.production ECGAPP_DATA_DIR=/var/lib/ecgapp
WORKDIR /app

# The CPU build of torch: the default index would pull a multi-GB CUDA build.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY mlcore ./mlcore
COPY training ./training
COPY ecgapp ./ecgapp
COPY clinical ./clinical
COPY monitoring ./monitoring
COPY templates ./templates
COPY static ./static
COPY manage.py gunicorn.conf.py ./
RUN pip install --no-cache-dir -e . \
 && useradd --system --home /var/lib/ecgapp ecgapp && mkdir -p /var/lib/ecgapp && chown ecgapp /var/lib/ecgapp

USER ecgapp
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live').status != 200)"
# web (default) | worker: celery -A ecgapp worker -Q inference,monitoring,celery | beat: celery -A ecgapp beat
# gunicorn.conf.py sets up Prometheus multiprocess mode; GUNICORN_WORKERS / GUNICORN_BIND tune it.
CMD ["gunicorn", "ecgapp.wsgi:application", "-c", "gunicorn.conf.py"]
