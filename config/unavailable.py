"""Which exceptions mean "a backing service is down", and how to say so to a person."""

from __future__ import annotations

from django.db import InterfaceError, OperationalError

from generation.storage import StorageUnavailable


class DispatchUnavailable(Exception):
    """The job queue could not be reached."""


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    StorageUnavailable,
    DispatchUnavailable,
)


def unavailable_message(exc: BaseException) -> str:
    """Return a short, secret-free sentence naming the service that is down."""
    if isinstance(exc, StorageUnavailable):
        return "The image store is unavailable. Please try again shortly."
    if isinstance(exc, DispatchUnavailable):
        return "The job queue is unavailable. Please try again shortly."
    return "The database is unavailable. Please try again shortly."
