"""A small HTTP/1.1 load generator for loopback benchmarks, closed or open loop.

Each of ``clients`` keep-alive connections sends a request, waits for the whole response and
records its latency. Closed loop (``rate=None``) it sends the next one at once: the most the
server gives ``clients`` users who never pause. Open loop the clients share a fixed ``rate``
of requests per second, each on its own evenly spaced schedule, and a latency counts from
when the request was due, so an answer that comes late and delays the next request is
charged to the server (no coordinated omission). Both stop when the time or request budget
runs out. It is written on asyncio streams, not an HTTP library, so that it costs the server
as little CPU as possible on a small shared machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (method, path, JSON body or None) for client number i
RequestMaker = Callable[[int], tuple[str, str, Any]]


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    errors: int = 0

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(part[:-2] for part in parts)
    else:
        body = await reader.read()
    return status, body, headers.get("connection", "").lower() == "close"


@dataclass
class _Plan:
    host: str
    port: int
    make: RequestMaker
    deadline: float
    budget: list[int]
    result: LoadResult
    keep_bodies: bool
    interval: float | None  # seconds between one client's requests (open loop)
    clients: int


async def _client(index: int, headers: dict[str, str], plan: _Plan) -> None:
    reader = writer = None
    result = plan.result
    due = time.perf_counter()
    if plan.interval:
        due += plan.interval * index / plan.clients  # spread the clients' schedules
    while time.perf_counter() < plan.deadline and plan.budget[0] > 0:
        plan.budget[0] -= 1
        if plan.interval:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        method, path, payload = plan.make(index)
        body = b"" if payload is None else json.dumps(payload).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {plan.host}:{plan.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if payload is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        started = due if plan.interval else time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(plan.host, plan.port)
            assert reader is not None
            writer.write(request)
            status, answer, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        finally:
            if plan.interval:
                due += plan.interval
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if plan.keep_bodies:
            result.bodies.append(answer)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(
    *,
    port: int,
    clients: int,
    seconds: float,
    make: RequestMaker,
    headers: Callable[[int], dict[str, str]],
    rate: float | None = None,
    max_requests: int = 1_000_000,
    host: str = "127.0.0.1",
    keep_bodies: bool = False,
) -> LoadResult:
    """Drive ``clients`` connections for ``seconds``: closed loop, or open at ``rate`` per s."""
    assert host.startswith("127.") or host in ("localhost", "::1"), "loopback only"
    result = LoadResult()
    plan = _Plan(
        host=host,
        port=port,
        make=make,
        deadline=0.0,
        budget=[max_requests],
        result=result,
        keep_bodies=keep_bodies,
        interval=clients / rate if rate else None,
        clients=clients,
    )

    async def main() -> None:
        plan.deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_client(i, headers(i), plan) for i in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    result.seconds = time.perf_counter() - started
    return result
