from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "governance.integrations"
    label = "integrations"
    verbose_name = "Webhooks and quotas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Webhooks follow the audit trail: every governed event an endpoint subscribes to
        # becomes a delivery in the same transaction (governance/integrations/webhooks.py).
        from governance.audit.models import AuditEvent
        from governance.audit.signals import audit_appending
        from governance.integrations.webhooks import on_audit_appending

        audit_appending.connect(
            on_audit_appending, sender=AuditEvent, dispatch_uid="integrations.webhooks"
        )
