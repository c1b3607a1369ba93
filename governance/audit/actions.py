"""Every governed write of the platform, as one dotted audit action.

Apps add members here with a small edit; the value is what the chain hashes, so an
existing value is never renamed.
"""

from __future__ import annotations

from django.db import models


class AuditAction(models.TextChoices):
    TEMPLATE_CREATED = "template.created", "Caption template created"
    TEMPLATE_VERSION_CREATED = "template.version_created", "Template version created"
    TEMPLATE_VERSION_SUBMITTED = "template.version_submitted", "Template version submitted"
    TEMPLATE_VERSION_PUBLISHED = "template.version_published", "Template version published"
    TEMPLATE_VERSION_REJECTED = "template.version_rejected", "Template version rejected"
    TEMPLATE_VERSION_RETIRED = "template.version_retired", "Template version retired"
    LINT_TERM_ADDED = "lint_term.added", "Lint term added"
    LINT_TERM_DEACTIVATED = "lint_term.deactivated", "Lint term deactivated"
    REGISTRY_VERSION_REGISTERED = "registry.version_registered", "Model version registered"
    REGISTRY_ALIAS_MOVE_REQUESTED = "registry.alias_move_requested", "Alias move requested"
    REGISTRY_ALIAS_MOVED = "registry.alias_moved", "Alias moved"
    REGISTRY_ALIAS_MOVE_REJECTED = "registry.alias_move_rejected", "Alias move rejected"
    REQUEST_CREATED = "request.created", "Generation request created"
    REQUEST_CHANGES_REQUESTED = "request.changes_requested", "Changes requested"
    REQUEST_LEGAL_HOLD_SET = "request.legal_hold_set", "Legal hold set"
    REQUEST_LEGAL_HOLD_RELEASED = "request.legal_hold_released", "Legal hold released"
    JOB_CREATED = "job.created", "Job created"
    JOB_SUCCEEDED = "job.succeeded", "Job succeeded"
    JOB_FAILED = "job.failed", "Job failed"
    JOB_CANCELLED = "job.cancelled", "Job cancelled"
    OUTPUT_CREATED = "output.created", "Output created"
    OUTPUT_CHECK_RECORDED = "output.check_recorded", "Output check recorded"
    REVIEW_APPROVED = "review.approved", "Review approved"
    REVIEW_REJECTED = "review.rejected", "Review rejected"
    REVIEW_CHANGES_REQUESTED = "review.changes_requested", "Review asked for changes"
    TEAM_CREATED = "team.created", "Team created"
    TEAM_MEMBER_ADDED = "team.member_added", "Team member added"
    TEAM_MEMBER_REMOVED = "team.member_removed", "Team member removed"
    OUTPUTS_EXPORTED = "outputs.exported", "Output records exported"
    ROLE_GRANTED = "role.granted", "Role granted"
    ROLE_REVOKED = "role.revoked", "Role revoked"
    RETENTION_PURGED = "retention.purged", "Retention purge"
    AUDIT_EXPORTED = "audit.exported", "Audit trail exported"
    AUDIT_ANCHORED = "audit.anchored", "Audit chain anchored"
    AUDIT_VERIFIED = "audit.verified", "Audit chain verified"
    REPLAY_RECORDED = "replay.recorded", "Replay recorded"
    WEBHOOK_DELIVERED = "webhook.delivered", "Webhook delivered"
    WEBHOOK_FAILED = "webhook.failed", "Webhook failed"
    WEBHOOK_ENDPOINT_CREATED = "webhook.endpoint_created", "Webhook endpoint registered"
    WEBHOOK_ENDPOINT_DEACTIVATED = "webhook.endpoint_deactivated", "Webhook endpoint deactivated"
    QUOTA_EXCEEDED = "quota.exceeded", "Quota exceeded"
    QUOTA_SET = "quota.set", "Team quota set"
