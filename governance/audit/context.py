"""Who is asking, from where: the request id and client address of the current request.

The middleware sets them for a web request; ``audit_context`` sets them for a task or a
command. ``audit_append`` reads them, so services need not pass the request around.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

# A caller's X-Request-ID is kept only if it is short and plain, so a log line or an
# export cannot be forged or bloated through it.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    client_ip: str = ""


_NONE = RequestContext()
_current: ContextVar[RequestContext | None] = ContextVar("audit_request_context", default=None)


def current_context() -> RequestContext:
    """Return the request id and client address of the code running now (blank if none)."""
    return _current.get() or _NONE


def new_request_id() -> str:
    """Return a fresh request id."""
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """Return the request id if it is plain and at most 64 characters, else ``None``."""
    if value and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return None


def clean_client_ip(value: str | None) -> str:
    """Return the address in its canonical text form, or ``""`` if it is not an IP address."""
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return ""


@contextlib.contextmanager
def audit_context(*, request_id: str | None = None, client_ip: str = "") -> Iterator[str]:
    """Run a block with this request id (a new one if not given) and client address."""
    request_id = request_id or new_request_id()
    context = RequestContext(request_id=request_id, client_ip=clean_client_ip(client_ip))
    token = _current.set(context)
    try:
        yield request_id
    finally:
        _current.reset(token)
