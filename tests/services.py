"""Private, throw-away service instances for fault tests: a RabbitMQ node and an S3 server.

Fault tests stop and restart these, never the shared services other test runs rely on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class PrivateRabbitMQ:
    """A second RabbitMQ node on its own ports and data folder."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"fault{os.getpid()}@localhost"
        self.base = Path(tempfile.mkdtemp(prefix="varclip-rmq-"))
        (self.base / "mnesia").mkdir()
        (self.base / "log").mkdir()
        (self.base / "plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if shutil.which("chown"):
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.base)], check=False)
        self.env = {
            **os.environ,
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.base / "feature_flags"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self.env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        subprocess.run(["rabbitmq-server", "-detached"], env=self.env, check=True, timeout=60)
        wait_for_port(self.port, 60)

    def stop_app(self) -> None:
        """Stop the broker application (connections drop), keeping the node and its data."""
        self._ctl("stop_app")

    def start_app(self) -> None:
        self._ctl("start_app")
        wait_for_port(self.port, 30)

    def shutdown(self) -> None:
        try:
            self._ctl("stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pid_file = self.base / "pid"
            if pid_file.exists():
                os.kill(int(pid_file.read_text().strip()), 9)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
