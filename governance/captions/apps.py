from django.apps import AppConfig


class CaptionsConfig(AppConfig):
    name = "governance.captions"
    label = "captions"
    verbose_name = "Caption templates"
