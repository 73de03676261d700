# Everything a new user or CI needs, from the project's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on disk here; elsewhere pip takes it from PyPI.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
STAMP := $(VENV)/.installed

# Where `make run` listens: `make run PORT=8001` (or HOST=0.0.0.0 to be reached from other machines; then add the
# name to DJANGO_ALLOWED_HOSTS).
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: venv run reset-demo test test-fast lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(PIP_FIND) -e ".[dev]"
	touch $@

# Quick start: migrate, demo accounts and ECGs, web + Celery worker + beat on http://127.0.0.1:8000.
run: export ECGAPP_DEMO ?= 1
run: export ECGAPP_SITE_URL ?= http://$(HOST):$(PORT)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_roles
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve $(HOST):$(PORT)

# Back to a fresh demo: deletes the embedded SQLite database, queued messages and report files (stop `make run`
# first), then migrates and seeds again; `make run` afterwards.
reset-demo: export ECGAPP_DEMO ?= 1
reset-demo: $(STAMP)
	$(BIN)/python manage.py seed_demo --reset

# The whole suite: the fast part in two processes, then the browser and fault tests one at a time (they start
# servers, browsers and private PostgreSQL/Redis instances of their own, and the fault tests kill processes).
test: test-fast
	$(BIN)/pytest tests/browser tests/faults

# The fast suite: everything but the browser and fault tests, in two processes (pytest-xdist; each gets its own
# test database, Redis database and Prometheus folder: ecgapp/settings/test.py).
FAST := --ignore=tests/browser --ignore=tests/faults
# Python's default, where an environment has turned it off: compiled modules (and pytest's rewritten test modules)
# are kept in __pycache__, so the processes the tests start, and the next run, do not compile them again.
test test-fast: export PYTHONDONTWRITEBYTECODE :=
test-fast: $(STAMP)
	$(BIN)/pytest $(FAST) -n 2 --dist worksteal -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m training bench
	@if [ -d ../shared/ludb ]; then $(BIN)/python -m training.bench_measure --data-dir ../shared/ludb; \
	else echo "bench_measure skipped: it needs LUDB in ../shared/ludb"; fi
	$(BIN)/python manage.py bench_upload --n 120
	$(BIN)/python manage.py bench_upload --api --n 60
	$(BIN)/python manage.py bench_audit --n 10000
	$(BIN)/python manage.py bench_api --clients 10 --requests 200
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py bench_embedded --clients 10 --seconds 60
	$(BIN)/python manage.py bench_storage --n 20
	@if [ -n "$$PTBXL_DIR" ]; then $(BIN)/python manage.py bench_import "$$PTBXL_DIR" --n 2000; \
	else echo "bench_import skipped: set PTBXL_DIR to an unpacked PTB-XL layout"; fi
	@if [ -n "$$DATABASE_URL" ]; then $(BIN)/python manage.py bench_monitoring --n 1000000; \
	else echo "bench_monitoring skipped: it needs DATABASE_URL (PostgreSQL)"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
