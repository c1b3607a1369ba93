"""Sampling settings as plain data, validated without importing torch (the web side)."""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {"cfg": 4.0, "top_k": 900, "top_p": 0.95, "more_smooth": False}
LIMITS = {"cfg": (0.0, 50.0), "top_k": (0, 65536), "top_p": (0.0, 1.0)}


class SamplingSettingsError(ValueError):
    """A sampling setting is unknown, of the wrong type, or out of range."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


def validate_sampling_settings(
    values: dict[str, Any], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return complete, typed settings, or raise naming every bad key."""
    if not isinstance(values, dict):
        raise SamplingSettingsError({"settings": "must be an object"})
    errors: dict[str, str] = {}
    for key in values:
        if key not in DEFAULTS:
            errors[key] = f"unknown setting (allowed: {', '.join(DEFAULTS)})"
    merged = {**DEFAULTS, **(defaults or {}), **{k: v for k, v in values.items() if k in DEFAULTS}}
    out: dict[str, Any] = {}
    for key in ("cfg", "top_p"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            errors[key] = "must be a number"
            continue
        low, high = LIMITS[key]
        if not low <= float(value) <= high:
            errors[key] = f"must be between {low} and {high}"
        out[key] = float(value)
    top_k = merged["top_k"]
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        errors["top_k"] = "must be an integer"
    elif not LIMITS["top_k"][0] <= top_k <= LIMITS["top_k"][1]:
        errors["top_k"] = f"must be between {LIMITS['top_k'][0]} and {LIMITS['top_k'][1]}"
    out["top_k"] = top_k
    if not isinstance(merged["more_smooth"], bool):
        errors["more_smooth"] = "must be true or false"
    out["more_smooth"] = merged["more_smooth"]
    if errors:
        raise SamplingSettingsError(errors)
    return out
