"""Import a CSV file into a project's dataset from the command line."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from datasets import imports
from datasets.ingest.errors import IngestError
from datasets.models import ImportJob, Project
from datasets.services import add_member, create_project

KINDS = ["interactions", "items", "users", "relations"]


class Command(BaseCommand):
    help = (
        "Import a CSV file (interactions, items, users or relations) into a project, "
        "creating the project if it does not exist. Prints the import report."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path of the CSV file")
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--kind", required=True, choices=KINDS)
        parser.add_argument("--mode", choices=["full", "incremental"], default="incremental")
        parser.add_argument(
            "--mapping",
            help='JSON object {"csv column": "FIELD"}; default: guessed from the header',
        )
        parser.add_argument("--delimiter", help="field delimiter; default: detected")
        parser.add_argument(
            "--show-rejected", type=int, default=50, help="rejected rows to print (default 50)"
        )

    def handle(self, *args, file, project, kind, mode, mapping, delimiter, show_rejected, **_):
        try:
            mapping = json.loads(mapping) if mapping else None
        except json.JSONDecodeError as exc:
            raise CommandError(f"--mapping is not valid JSON: {exc}") from exc
        if mapping is not None and not isinstance(mapping, dict):
            raise CommandError('--mapping must be a JSON object like {"user": "USER_ID"}')
        target = self._project(project)
        try:
            job = imports.import_file(
                project=target,
                kind=kind,
                path=file,
                mode=mode,
                mapping=mapping,
                delimiter=delimiter,
            )
        except IngestError as exc:
            raise CommandError(f"Could not import {file}: {exc}") from exc
        self._print_report(job, show_rejected)
        if job.status != ImportJob.Status.SUCCEEDED:
            raise CommandError(f"Import failed: {job.error}")

    def _project(self, slug):
        project = Project.objects.filter(slug=slug).first()
        if project is not None:
            return project
        owner = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        if owner is None:
            project = Project.objects.create(name=slug.replace("-", " ").title(), slug=slug)
        else:
            project = create_project(name=slug.replace("-", " ").title(), slug=slug, owner=owner)
            add_member(project=project, user=owner, role="owner")
        self.stdout.write(f"Created project '{project.slug}'.")
        return project

    def _print_report(self, job, show_rejected):
        report = job.report or {}
        self.stdout.write(
            f"{job.kind} import #{job.pk} from {job.source_name}: {job.get_status_display()}"
        )
        for key, label in [
            ("rows_read", "rows read"),
            ("accepted", "accepted"),
            ("rejected", "rejected"),
            ("duplicates", "duplicates"),
            ("blank_lines", "blank lines"),
            ("unknown_items", "item ids not in the Items dataset"),
            ("unknown_users", "user ids not in the Users dataset"),
            ("replaced_rows", "rows replaced"),
            ("seconds", "seconds"),
        ]:
            if key in report:
                self.stdout.write(f"  {label:36} {report[key]}")
        if report.get("rows_read") and report.get("seconds"):
            self.stdout.write(
                f"  {'rows per second':36} {report['rows_read'] / report['seconds']:,.0f}"
            )
        for reason, count in report.get("rejections_by_reason", {}).items():
            self.stdout.write(f"  rejected {count} × {reason}")
        rejected = imports.rejection_rows(job, limit=show_rejected)
        for rejection in rejected:
            column = f" [{rejection.column}]" if rejection.column else ""
            self.stdout.write(
                f"  line {rejection.line}{column}: {rejection.reason} ({rejection.value!r})"
            )
        if report.get("rejected", 0) > len(rejected):
            self.stdout.write(f"  ... all rejected rows are in {imports.rejected_path(job)}")
