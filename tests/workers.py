"""A real Celery worker process for tests: start, SIGKILL, restart, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test database)."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def declare_and_purge_queue() -> None:
    """Declare the gpu queue as the app defines it and drop any stale messages."""
    from config.celery import app

    queue = app.amqp.queues[settings.GENERATION_QUEUE]
    with app.connection_for_write() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()


class CeleryWorker:
    """One ``celery worker`` process on the gpu queue, sharing the test database."""

    def __init__(self, log_dir: Path, name: str, extra_env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.name = name
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "VAR_DIR": str(log_dir),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.log_dir / f"{self.name}-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker",
             "-Q", settings.GENERATION_QUEUE, "--pool", "solo", "--concurrency", "1",
             "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "-n", f"{self.name}-{os.getpid()}-{self.starts}@localhost"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: no chance to acknowledge, clean up or finish the job in hand."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.log_dir.glob(f"{self.name}-*.log")))
