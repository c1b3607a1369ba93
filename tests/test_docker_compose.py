"""Docker cannot run here, so check the compose file against what the settings read."""

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
# Variables only the containers themselves use (postgres and rabbitmq images).
CONTAINER_ONLY = {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"}


def _settings_variables() -> set[str]:
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "env"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(node.args[0].value)
    return names


def test_compose_has_every_service_of_the_platform():
    assert set(COMPOSE["services"]) >= {
        "postgres", "rabbitmq", "redis", "s3", "web", "worker", "worker-default", "beat",
    }  # fmt: skip


def test_every_app_variable_in_compose_is_read_by_the_settings():
    read = _settings_variables()
    for service in ("web", "worker", "worker-default", "beat"):
        names = set(COMPOSE["services"][service]["environment"])
        assert names - read == set(), f"{service} sets variables nothing reads"


def test_compose_configures_every_service_the_settings_need():
    names = set(COMPOSE["services"]["web"]["environment"])
    assert {
        "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "S3_ENDPOINT_URL",
        "S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "DJANGO_SECRET_KEY",
    } <= names  # fmt: skip


def test_worker_reserves_a_gpu_and_consumes_the_gpu_queue():
    worker = COMPOSE["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    dockerfile = (ROOT / "docker" / "worker.Dockerfile").read_text()
    assert re.search(r"-Q\", \"gpu\"", dockerfile)
    assert worker["environment"]["GENERATION_DEVICE"] == "cuda"


def test_env_example_lists_only_variables_that_are_read():
    names = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names - _settings_variables() - CONTAINER_ONLY == set()


def test_rabbitmq_consumer_timeout_exceeds_the_job_time_limit():
    conf = (ROOT / "docker" / "rabbitmq.conf").read_text()
    timeout_ms = int(re.search(r"consumer_timeout\s*=\s*(\d+)", conf).group(1))
    limit = int(
        COMPOSE["services"]["web"]["environment"]["GENERATION_JOB_TIME_LIMIT"]
        .split(":-")[1]
        .rstrip("}")
    )
    assert timeout_ms > limit * 1000
