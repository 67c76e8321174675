"""django-q2 entry points for imports: thin wrappers that load the job and call the service."""

from datasets import imports
from datasets.models import ImportJob


def dry_run_import(job_id: int) -> dict:
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    return imports.dry_run(job)


def run_import(job_id: int) -> str:
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    return imports.run(job).status
