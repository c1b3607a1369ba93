"""Governance: caption templates, the model registry, approvals and the audit trail."""
