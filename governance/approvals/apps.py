from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "governance.approvals"
    label = "approvals"
    verbose_name = "Requests and review"
    default_auto_field = "django.db.models.BigAutoField"
