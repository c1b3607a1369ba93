"""Create the five governance role groups (see governance/roles.py)."""

from django.db import migrations

ROLES = ("requester", "reviewer", "auditor", "model_admin", "administrator")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES, user__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("registry", "0002_alias_move_requests"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
