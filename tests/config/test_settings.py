"""The same settings module yields the embedded default or the service deployment."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'db': settings.DATABASES['default']['ENGINE'],"
    "'store': settings.OBJECT_STORE_BACKEND, 'worker': settings.GENERATION_WORKER,"
    "'debug': settings.DEBUG, 'broker': settings.CELERY_BROKER_URL}))"
)


def _settings_under(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_environment_gives_the_embedded_default(tmp_path):
    result = _settings_under({"VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values == {
        "db": "django.db.backends.sqlite3",
        "store": "local",
        "worker": "inprocess",
        "debug": True,
        "broker": None,
    }


def test_service_environment_selects_postgres_rabbitmq_and_s3(tmp_path):
    result = _settings_under(
        {
            "VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
            "S3_BUCKET": "b",
            "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "DJANGO_SECRET_KEY": "x" * 50,
            "AUDIT_HMAC_KEY": "k" * 40,
            "PROVENANCE_SIGNING_KEY": "p" * 40,
        }
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["db"] == "django.db.backends.postgresql"
    assert (values["store"], values["worker"], values["debug"]) == ("s3", "celery", False)


def test_production_without_a_secret_key_fails_loudly(tmp_path):
    result = _settings_under({"VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_malformed_number_in_environment_fails_at_start_up(tmp_path):
    result = _settings_under({"VAR_DIR": str(tmp_path), "GENERATION_JOB_TIME_LIMIT": "soon"})
    assert result.returncode != 0
    assert "GENERATION_JOB_TIME_LIMIT='soon' is not an integer" in result.stderr


def test_job_time_limit_must_stay_below_rabbitmq_consumer_timeout(tmp_path):
    result = _settings_under({"VAR_DIR": str(tmp_path), "GENERATION_JOB_TIME_LIMIT": "8000"})
    assert result.returncode != 0
    assert "consumer_timeout" in result.stderr


def test_production_without_an_audit_key_fails_loudly(tmp_path):
    result = _settings_under(
        {"VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50}
    )
    assert result.returncode != 0
    assert "AUDIT_HMAC_KEY is required" in result.stderr


def test_cache_key_prefix_separates_deployments_sharing_one_redis(tmp_path):
    probe = (
        "import django; from django.conf import settings; django.setup();"
        "from django.core.cache import caches;"
        "print(settings.CACHES['default']['KEY_PREFIX'], caches['default'].make_key('k'))"
    )
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings"}
    redis = {"VAR_DIR": str(tmp_path), "CACHE_URL": "redis://127.0.0.1:6379/2"}
    outputs = []
    for prefix in ("run-a", "run-b"):
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**base, **redis, "CACHE_KEY_PREFIX": prefix},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.split())
    assert outputs == [["run-a", "run-a:1:k"], ["run-b", "run-b:1:k"]]
