#!/usr/bin/env bash
# Run the whole test suite against PostgreSQL, RabbitMQ, Redis and a local S3 server.
# Extra arguments go to pytest (e.g. scripts/run_tests.sh tests/generation -x).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

"$PY" scripts/check_services.py

S3_DIR=$(mktemp -d /tmp/varclip-s3.XXXXXX)
cleanup() { "$PY" scripts/s3_server.py stop --dir "$S3_DIR" || true; rm -rf "$S3_DIR"; }
trap cleanup EXIT
eval "$("$PY" scripts/s3_server.py start --dir "$S3_DIR" --bucket varclip-test)"
echo "S3 server (weed mini) on $S3_ENDPOINT_URL, data in $S3_DIR"

# Per-run database and queue names, so concurrent runs on one machine never share state
# (pytest-django creates and drops test_<name>).
RUN_ID=$$
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/varclip_run$RUN_ID}
export GENERATION_QUEUE=${TEST_GENERATION_QUEUE:-gpu-test-$RUN_ID}
export CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//}
export CELERY_RESULT_BACKEND=${TEST_CELERY_RESULT_BACKEND:-redis://127.0.0.1:6379/1}
export CACHE_URL=${TEST_CACHE_URL:-redis://127.0.0.1:6379/2}
# A prefix per run: throttle counts left in Redis by an earlier run or a benchmark never apply.
export CACHE_KEY_PREFIX=run$RUN_ID
export DJANGO_DEBUG=0 DJANGO_SECRET_KEY=test-only-secret-key-not-for-production-0123456789abcdef
export AUDIT_HMAC_KEY=test-only-audit-hmac-key-0123456789abcdef
# plain HTTP on loopback: no HTTPS redirect, cookies not secure-only
export DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0
export PROVENANCE_SIGNING_KEY=test-only-provenance-signing-key-0123456789abcdef
export VAR_DIR=${VAR_DIR:-$(mktemp -d /tmp/varclip-var.XXXXXX)}

# pytest exits 5 when it collected no tests; set -e turns that into a failure too.
"$PY" -m pytest "$@"
