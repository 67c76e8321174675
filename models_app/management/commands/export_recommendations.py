"""Export top-N recommendations of a model version to a CSV or JSON Lines file."""

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from datasets.models import Project
from models_app import exports
from models_app.models import BatchExport, ModelVersion


class Command(BaseCommand):
    help = (
        "Write the top-N recommendations of a model version for every user it knows (or the "
        "users listed in --users, one id per line) to CSV or JSON Lines, in this process, and "
        "print where the file is."
    )

    def add_base_argument(self, parser, *args, **kwargs):
        if "--version" in args:  # here --version names the model version to export
            return
        super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="project slug")
        parser.add_argument("--version", required=True, type=int, help="model version id")
        parser.add_argument("--format", choices=BatchExport.Format.values, default="csv")
        parser.add_argument(
            "--num-results", type=int, default=25, help=f"items per user, 1..{exports.MAX_RESULTS}"
        )
        parser.add_argument("--users", help="file with one user id per line (default: all)")
        parser.add_argument(
            "--include-seen",
            action="store_true",
            help="keep items the user already interacted with (left out by default)",
        )
        parser.add_argument(
            "--output", help="copy the file here too (it also stays downloadable in the UI)"
        )

    def handle(self, *args, project, version, format, num_results, users, include_seen,
               output, **_):  # fmt: skip
        found = Project.objects.filter(slug=project).first()
        if found is None:
            raise CommandError(f"No project with slug {project!r}.")
        model = ModelVersion.objects.filter(pk=version, project=found).first()
        if model is None:
            raise CommandError(
                f"No model version #{version} in project {project!r}; the Models page lists them."
            )
        try:
            export = exports.start_export(
                project=found,
                version=model,
                format=format,
                num_results=num_results,
                exclude_seen=not include_seen,
                user_list=Path(users) if users else None,
                enqueue=False,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Batch export #{export.pk}: writing…")
        export = exports.run_export(export)
        if export.status != BatchExport.Status.SUCCEEDED:
            raise CommandError(f"Batch export #{export.pk} {export.status}: {export.error}")
        path = Path(export.file_path)
        if output:
            target = Path(output).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            path = target
        self.stdout.write(
            f"Exported {export.users_exported:,} users ({export.users_unknown:,} with the "
            f"popularity fallback), top {export.num_results}, to {path}"
        )
