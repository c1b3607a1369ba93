"""Typed readers for the process environment.

This is the only module that reads ``os.environ`` for settings. Each reader names the
variable it failed on, so a malformed deployment fails at start-up with a clear message
instead of somewhere deep inside a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """Reads typed values from a mapping (the process environment by default)."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self._source = os.environ if source is None else source

    def _raw(self, name: str) -> str | None:
        value = self._source.get(name)
        return None if value is None else value.strip()

    def is_set(self, name: str) -> bool:
        """Return whether the variable is present and not blank."""
        return bool(self._raw(name))

    def get_str(self, name: str, default: str | None = None) -> str:
        """Return the variable as a string, or the default; raise if neither exists."""
        value = self._raw(name)
        if value:
            return value
        if default is None:
            raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
        return default

    def get_bool(self, name: str, default: bool) -> bool:
        """Return the variable parsed as a boolean (1/0, true/false, yes/no, on/off)."""
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} is not a boolean (use 1/0, true/false)."
        )

    def get_int(
        self, name: str, default: int, *, min_value: int | None = None, max_value: int | None = None
    ) -> int:
        """Return the variable parsed as an integer within the given bounds."""
        value = self._raw(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"Environment variable {name}={value!r} is not an integer."
            ) from None
        if min_value is not None and number < min_value:
            raise ImproperlyConfigured(
                f"Environment variable {name}={number} is below {min_value}."
            )
        if max_value is not None and number > max_value:
            raise ImproperlyConfigured(
                f"Environment variable {name}={number} is above {max_value}."
            )
        return number

    def get_float(self, name: str, default: float, *, min_value: float | None = None) -> float:
        """Return the variable parsed as a float, at least ``min_value`` when given."""
        value = self._raw(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"Environment variable {name}={value!r} is not a number."
            ) from None
        if min_value is not None and number < min_value:
            raise ImproperlyConfigured(
                f"Environment variable {name}={number} is below {min_value}."
            )
        return number

    def get_list(self, name: str, default: list[str]) -> list[str]:
        """Return a comma-separated variable as a list of non-empty items."""
        value = self._raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def get_choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """Return the variable if it is one of ``choices``."""
        value = self._raw(name) or default
        if value not in choices:
            raise ImproperlyConfigured(
                f"Environment variable {name}={value!r} must be one of {', '.join(choices)}."
            )
        return value

    def get_url(self, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
        """Return the variable if it is a URL with one of ``schemes`` and a host."""
        value = self._raw(name) or default
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ImproperlyConfigured(
                f"Environment variable {name} must be a URL with scheme {' or '.join(schemes)}, "
                f"got {parts.scheme or 'none'!r}."
            )
        if parts.scheme not in ("memory", "sqlite") and not parts.hostname:
            raise ImproperlyConfigured(f"Environment variable {name} has no host: {value!r}.")
        return value


def database_from_url(url: str) -> dict[str, object]:
    """Turn ``postgres://user:pass@host:port/name`` or ``sqlite:///path`` into a Django DB dict."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("//") else parts.path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path or ":memory:"}
    if parts.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported (use postgres:// or sqlite:///)."
        )
    name = parts.path.lstrip("/")
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database (postgres://host:5432/NAME).")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"DATABASE_URL has a malformed port: {url!r}.") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
