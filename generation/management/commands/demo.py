"""Set up the embedded demo and run one request end to end."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.bundled import (
    bundled_checkpoint_dir,
    registry_card,
    registry_sampling_defaults,
)
from generation.dispatch import wait_for_inprocess_jobs
from generation.models import GenerationJob, JobStatus
from generation.services import job_create
from generation.storage import LocalStore, get_store
from governance.registry.models import ModelAlias
from governance.registry.services import (
    alias_move,
    model_version_register,
    sources_from_directory,
)

DEMO_CAPTION = "a large red circle in the centre, blue background"


class Command(BaseCommand):
    help = "Migrate, load the bundled model and a demo user, and generate one image end to end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--caption", default=DEMO_CAPTION)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        # 1. database
        call_command("migrate", interactive=False, verbosity=0)
        # 2. demo user
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username="demo", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password("demo")
            user.save()
        # 3. bundled model, registered once and aliased as production
        name = settings.GENERATION_DEFAULT_MODEL
        alias = settings.GENERATION_DEFAULT_ALIAS
        if not ModelAlias.objects.filter(model__name=name, name=alias).exists():
            directory = bundled_checkpoint_dir()
            self.stdout.write(f"registering the bundled model from {directory}")
            version = model_version_register(
                model_name=name,
                sources=sources_from_directory(directory),
                registered_by=None,
                model_card=registry_card(directory),
                sampling_defaults=registry_sampling_defaults(directory),
            )
            alias_move(
                model_name=name, alias=alias, version=version.version, moved_by=None,
                reason="bundled demo model",
            )  # fmt: skip
        # 4. people, a team and the demo caption templates, so every page has something to show
        self._demo_people_and_templates(user)
        # 5. one request, end to end, on the in-process worker
        job = job_create(created_by=user, caption=options["caption"], seed=options["seed"])
        self.stdout.write(f"job {job.id} queued on {job.model_version}; generating ...")
        wait_for_inprocess_jobs()
        job = GenerationJob.objects.select_related("model_version").get(pk=job.pk)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"the demo job ended {job.status}: {job.failure_reason}")
        output = job.output
        store = get_store()
        where = (
            store.root / output.storage_key
            if isinstance(store, LocalStore)
            else f"s3://{settings.S3_BUCKET}/{output.storage_key}"
        )
        record = {
            "job": str(job.id),
            "output": str(output.id),
            "caption": output.caption,
            "seed": output.seed,
            "sampling": output.sampling,
            "model_version": str(output.model_version),
            "sha256": output.sha256,
            "size_bytes": output.size_bytes,
            "width": output.width,
            "height": output.height,
        }
        self.stdout.write(self.style.SUCCESS(f"image:  {where}"))
        self.stdout.write(f"record: {settings.DATABASES['default']['NAME']} (generation_output)")
        self.stdout.write(json.dumps(record, indent=2))
        self.stdout.write(
            "sign in at http://127.0.0.1:8000/ as demo / demo (requester, auditor, model admin, "
            "administrator) or demo-reviewer / demo (reviewer: nobody reviews their own request)"
        )

    def _demo_people_and_templates(self, demo: Any) -> None:
        from governance.approvals.models import Team
        from governance.approvals.services import team_create, team_member_add
        from governance.roles import Role, role_grant

        reviewer, created = get_user_model().objects.get_or_create(username="demo-reviewer")
        if created:
            reviewer.set_password("demo")
            reviewer.save()
        for role in (Role.REQUESTER, Role.AUDITOR, Role.MODEL_ADMIN, Role.ADMINISTRATOR):
            role_grant(user=demo, role=role, granted_by=None)
        role_grant(user=reviewer, role=Role.REVIEWER, granted_by=None)
        team = Team.objects.filter(name="demo").first() or team_create(
            name="demo", title="Demo team", created_by=None
        )
        for member in (demo, reviewer):
            team_member_add(team=team, user=member, added_by=None)
        call_command("load_demo_templates", stdout=self.stdout)
