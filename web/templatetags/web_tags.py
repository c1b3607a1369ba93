"""Filters that name statuses and roles in the page's language."""

from __future__ import annotations

from typing import Any

from django import template

from web import presentation

register = template.Library()


@register.filter
def review_status(value: str) -> str:
    return str(presentation.REVIEW_STATUS_NAMES.get(value, value))


@register.filter
def job_status(value: str) -> str:
    return str(presentation.JOB_STATUS_NAMES.get(value, value))


@register.filter
def move_status(value: str) -> str:
    return str(presentation.MOVE_STATUS_NAMES.get(value, value))


@register.filter
def delivery_status(value: str) -> str:
    return str(presentation.DELIVERY_STATUS_NAMES.get(value, value))


@register.filter
def role_name(value: str) -> str:
    return str(presentation.ROLE_NAMES.get(value, value))


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """``mapping[key]`` in a template (None when absent)."""
    try:
        return mapping.get(key) if hasattr(mapping, "get") else mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


@register.filter
def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"
