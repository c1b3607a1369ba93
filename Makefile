# One command per habit, the same locally and in CI.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint typecheck

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# Browser tests drive Debian's Chromium; the Japanese catalogue compiles with gettext.
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium gettext)
	touch $@

## Demo on the embedded default: SQLite, files under ./var, in-process worker, bundled model.
demo: install
	env -u DATABASE_URL -u CELERY_BROKER_URL -u S3_BUCKET $(PY) manage.py demo
	env -u DATABASE_URL -u CELERY_BROKER_URL -u S3_BUCKET $(PY) manage.py runserver 127.0.0.1:8000

## The whole test suite against PostgreSQL, RabbitMQ, Redis and a local S3 server.
test: install
	bash scripts/run_tests.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy
