"""Shared set-up of the platform benchmarks: a dedicated PostgreSQL database, RabbitMQ and Redis
configured through the environment exactly as in production, and process measurements.

The benchmarks create their own database (``varclip_bench_*``) and queue and remove them at
the end; nothing here touches another database.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def bench_environment(database: str, *, queue: str, **extra: str) -> dict[str, str]:
    """Return the environment of a production-like run on ``database`` and ``queue``."""
    var_dir = tempfile.mkdtemp(prefix=f"{database}-")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"{POSTGRES}/{database}",
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
        "CELERY_RESULT_BACKEND": os.environ.get("BENCH_RESULTS", "redis://127.0.0.1:6379/3"),
        "CACHE_URL": os.environ.get("BENCH_CACHE", "redis://127.0.0.1:6379/4"),
        "GENERATION_QUEUE": queue,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-not-for-production-0123456789abcdef",
        "AUDIT_HMAC_KEY": "benchmark-only-audit-hmac-key-0123456789abcdef",
        "PROVENANCE_SIGNING_KEY": "benchmark-only-provenance-key-0123456789abcdef",
        "AUDIT_ANCHOR_BACKEND": "local",
        "VAR_DIR": var_dir,
        "LOG_LEVEL": "WARNING",
    }
    for name in ("S3_BUCKET", "S3_ENDPOINT_URL", "OBJECT_STORE_BACKEND"):
        env.pop(name, None)
    env.update(extra)
    return env


def _admin_sql(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return row is not None


def create_database(name: str) -> None:
    """Drop ``name`` if it exists and create it empty (benchmark databases only)."""
    assert name.startswith("varclip_bench"), name
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    assert name.startswith("varclip_bench"), name
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict[str, str], *args: str, check: bool = True) -> str:
    """Run ``manage.py`` with ``args`` in ``env`` and return its standard output."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def register_tiny_model(env: dict[str, str]) -> None:
    """Write the tiny-preset checkpoint and register it as demo@production."""
    script = (
        "import django; django.setup()\n"
        "from pathlib import Path\n"
        "from django.conf import settings\n"
        "from generation.engine.config import VarClipConfig\n"
        "from generation.engine.pipeline import TextToImagePipeline\n"
        "from governance.registry.services import alias_move, model_version_register, "
        "sources_from_directory\n"
        "d = Path(settings.VAR_DIR) / 'tiny-model'\n"
        "TextToImagePipeline.from_config(VarClipConfig.from_preset('tiny'), seed=0)"
        ".save_pretrained(d)\n"
        "v = model_version_register(model_name='demo', sources=sources_from_directory(d), "
        "registered_by=None)\n"
        "alias_move(model_name='demo', alias='production', version=v.version, moved_by=None, "
        "reason='benchmark')\n"
    )
    subprocess.run([PYTHON, "-c", script], cwd=ROOT, env=env, check=True)


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages as text (the machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def rss_mb(pid: int) -> float | None:
    """Return the resident set size of process ``pid`` in MB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds until it ends."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []

    def run(self) -> None:
        start = time.perf_counter()
        while (value := rss_mb(self.pid)) is not None:
            self.samples.append((time.perf_counter() - start, value))
            time.sleep(self.interval)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Return count, p50, p95, p99 and max of ``values`` (milliseconds in, milliseconds out)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": round(pick(0.95), 2),
        "p99": round(pick(0.99), 2),
        "max": round(ordered[-1], 2),
    }


def describe(result: Any) -> str:
    import json

    return json.dumps(result, indent=2, default=str)
