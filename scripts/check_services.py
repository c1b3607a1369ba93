"""Say which backing service of the test suite is unreachable, and how to start it."""

from __future__ import annotations

import socket
import sys

SERVICES = [
    (
        "PostgreSQL",
        5432,
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    ("RabbitMQ", 5672, "rabbitmq-server -detached"),
    (
        "Redis",
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
    ),
]


def main() -> int:
    missing = []
    for name, port, how in SERVICES:
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                missing.append(
                    f"  {name} is not reachable on 127.0.0.1:{port}. Start it with:\n    {how}"
                )
    if missing:
        print("The test suite needs these services:\n" + "\n".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
