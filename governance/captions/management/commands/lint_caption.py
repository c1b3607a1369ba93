"""Lint a caption against a template version, or print the version's full lint report."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.captions.report import caption_lines, report_lines
from governance.captions.services import (
    TemplateError,
    caption_lint,
    template_version_resolve,
    version_lint_report,
)


class Command(BaseCommand):
    help = (
        "Lint TEMPLATE[:VERSION] with --var name=value ...; without --var, lint every example "
        "and every variable at its longest (the check run before submission)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "template", help="template name, optionally :version (default: newest published)"
        )
        parser.add_argument(
            "--var", action="append", default=[], metavar="NAME=VALUE", help="a variable value"
        )
        parser.add_argument(
            "--language", default="en", help="language of choice labels given as values"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = template_version_resolve(options["template"])
        except TemplateError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{version} ({version.status})")
        if not options["var"]:
            for line in report_lines(version_lint_report(version)):
                self.stdout.write(line)
            return
        values: dict[str, str] = {}
        for item in options["var"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--var wants NAME=VALUE, got {item!r}")
            values[name.strip()] = value
        lint = caption_lint(version=version, values=values, language=options["language"])
        for line in caption_lines(lint.to_dict(), indent=""):
            self.stdout.write(line)
        if lint.errors:
            raise CommandError(f"{len(lint.errors)} lint error(s)")
