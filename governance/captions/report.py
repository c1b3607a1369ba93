"""Lint reports as plain text, for the commands (the UI renders the same JSON its own way)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_MARK = {"error": "ERROR", "warning": "warn ", "info": "info "}


def finding_lines(findings: Iterable[dict[str, Any]], indent: str = "  ") -> list[str]:
    """One line per finding: severity, rule, message."""
    return [f"{indent}{_MARK[f['severity']]} [{f['rule']}] {f['message']}" for f in findings]


def caption_lines(case: dict[str, Any], indent: str = "  ") -> list[str]:
    """A linted caption: its text, token count, key positions and findings."""
    lines = []
    if case.get("caption"):
        positions = ", ".join(f"{k}@{v}" for k, v in case.get("positions", {}).items())
        lines.append(f'{indent}"{case["caption"]}"')
        lines.append(f"{indent}  {case['token_count']} tokens incl. start/end; starts: {positions}")
    findings = case.get("findings", [])
    lines += finding_lines(findings, indent + "  ") if findings else [f"{indent}  no findings"]
    return lines


def report_lines(report: dict[str, Any]) -> list[str]:
    """A whole version report: policy, template-level findings, then every case."""
    policy = report["policy"]
    typical = policy["typical_caption_tokens"]
    card = policy["model_version"] or "no model version"
    stated = f"{typical} tokens" if typical is not None else "not stated"
    lines = [
        f"lint ({report['tokenizer']}; key terms within the first "
        f"{report['rules']['key_position_limit']} tokens; typical caption ({card}): {stated}; "
        f"{policy['banned_terms']} banned terms; required: "
        f"{', '.join(policy['required_terms']) or 'none'})",
        f"{report['errors']} error(s), {report['warnings']} warning(s)",
    ]
    if report["template_findings"]:
        lines.append("template:")
        lines += finding_lines(report["template_findings"])
    for case in report["cases"]:
        lines.append(f"{case['label']}:")
        lines += caption_lines(case)
    return lines
