"""Pages of the data section: dataset overview, the CSV import wizard, schemas."""

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from datasets import imports, selectors
from datasets.ingest.errors import IngestError
from datasets.ingest.reader import Rejection
from datasets.ingest.schema import FIELD_TYPES, KINDS, Field, SchemaError, reserved_names
from datasets.ingest.sniff import DELIMITER_NAMES, Dialect
from datasets.models import DatasetKind, ImportJob
from datasets.views import project_view


def _job(request, job_id) -> ImportJob:
    job = get_object_or_404(ImportJob, pk=job_id, project=request.project)
    if job.status == ImportJob.Status.RUNNING:  # is its worker still alive?
        imports.fail_stale_jobs(request.project)
        job.refresh_from_db()
    return job


@project_view
def data_overview(request):
    imports.fail_stale_jobs(request.project)
    return render(
        request,
        "datasets/data.html",
        {
            "project": request.project,
            "datasets": selectors.dataset_summaries(request.project),
            "jobs": selectors.recent_imports(request.project),
            "kinds": DatasetKind.choices,
        },
    )


@require_POST
@project_view
def import_upload(request):
    kind = request.POST.get("kind", "")
    upload = request.FILES.get("file")
    if kind not in KINDS:
        messages.error(request, "Choose which dataset the file holds.")
        return redirect("data", slug=request.project.slug)
    if upload is None:
        messages.error(request, "Choose a CSV file to upload.")
        return redirect("data", slug=request.project.slug)
    try:
        job = imports.create_upload(
            project=request.project, kind=kind, uploaded_file=upload, user=request.user
        )
    except IngestError as exc:
        messages.error(request, f"{upload.name}: {exc}")
        return redirect("data", slug=request.project.slug)
    return redirect("import-job", slug=request.project.slug, job_id=job.pk)


@project_view
def import_job(request, job_id):
    job = _job(request, job_id)
    if request.method == "POST" and not job.is_finished:
        return _configure(request, job)
    return render(request, "datasets/import_job.html", _job_context(request, job))


def _job_context(request, job, error=""):
    context = {"project": request.project, "job": job, "error": error}
    if job.dialect:
        dialect = Dialect.from_dict(job.dialect)
        fields = {f.name: f for f in imports.job_fields(job)}
        schema = imports.get_schema(job.project, job.kind)
        reserved = reserved_names(job.kind)
        attribute_names = {f.name for f in schema if f.name not in reserved}
        columns = []
        for index, column in enumerate(dialect.columns):
            target = job.mapping.get(column, "")
            columns.append(
                {
                    "index": index,
                    "name": column,
                    "samples": [row[index] for row in dialect.preview[:3] if index < len(row)],
                    "target": target,
                    "type": fields[target].type if target in fields else "",
                    "is_attribute": bool(target) and target not in reserved,
                    "is_new": bool(target)
                    and target not in reserved
                    and target not in attribute_names,
                }
            )
        context.update(
            dialect=dialect,
            delimiter_name=DELIMITER_NAMES.get(dialect.delimiter, dialect.delimiter),
            delimiters=DELIMITER_NAMES.items(),
            columns=columns,
            reserved=[f for f in schema if f.name in reserved],
            attributes=[f for f in schema if f.name not in reserved],
            field_types=FIELD_TYPES,
            takes_attributes=job.kind in ("items", "users"),
            schema_locked=imports.has_imported(job.project, job.kind),
            preview_rows=dialect.preview,
        )
    context["progress"] = imports.read_progress(job)
    if job.is_finished:
        context["rejections"] = imports.rejection_rows(job, limit=100)
    elif job.validation.get("status") == "done":
        context["rejections"] = [Rejection(**r) for r in job.validation["sample_rejections"]]
    return context


def _configure(request, job):
    dialect = Dialect.from_dict(job.dialect)
    mapping, field_types = {}, {}
    for index, column in enumerate(dialect.columns):
        target = request.POST.get(f"map_{index}", "").strip()
        mapping[column] = target
        if target and request.POST.get(f"type_{index}") in FIELD_TYPES:
            field_types[target] = request.POST[f"type_{index}"]
    delimiter = request.POST.get("delimiter") or None
    has_header = request.POST.get("has_header")
    try:
        imports.configure(
            job=job,
            mapping=mapping,
            mode=request.POST.get("mode", ImportJob.Mode.INCREMENTAL),
            delimiter=delimiter,
            has_header=None if has_header is None else has_header == "yes",
            field_types=field_types,
        )
        action = request.POST.get("action")
        if action == "dry_run":
            imports.queue_dry_run(job)
            messages.info(request, "Checking every row of the file; nothing is written.")
        elif action == "import":
            imports.queue_import(job)
            messages.info(request, "Import queued.")
    except IngestError as exc:
        job.refresh_from_db()
        return render(
            request, "datasets/import_job.html", _job_context(request, job, error=str(exc))
        )
    return redirect("import-job", slug=request.project.slug, job_id=job.pk)


@project_view
def import_progress(request, job_id):
    """The htmx-polled status panel; when the job has finished, reload the whole page."""
    job = _job(request, job_id)
    response = render(
        request,
        "datasets/_import_progress.html",
        {"project": request.project, "job": job, "progress": imports.read_progress(job)},
    )
    validating = job.validation.get("status") == "queued"
    if (
        request.GET.get("watching")
        and (job.is_finished or not validating)
        and (job.status not in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING))
    ):
        response["HX-Refresh"] = "true"
    return response


@require_POST
@project_view
def import_cancel(request, job_id):
    job = _job(request, job_id)
    imports.request_cancel(job)
    messages.info(request, "Cancelling; nothing from this import will be kept.")
    return redirect("import-job", slug=request.project.slug, job_id=job.pk)


@require_POST
@project_view
def import_retry(request, job_id):
    job = _job(request, job_id)
    try:
        clone = imports.retry(job, user=request.user)
    except IngestError as exc:
        messages.error(request, str(exc))
        return redirect("import-job", slug=request.project.slug, job_id=job.pk)
    messages.info(request, f"Retrying as import #{clone.pk}.")
    return redirect("import-job", slug=request.project.slug, job_id=clone.pk)


@project_view
def import_rejected_csv(request, job_id):
    job = _job(request, job_id)
    path = imports.rejected_path(job)
    if not path.exists():
        raise Http404("This import has no rejected rows file.")
    return FileResponse(
        open(path, "rb"),
        as_attachment=True,
        filename=f"import-{job.pk}-rejected.csv",
        content_type="text/csv",
    )


@project_view
def schema_edit(request, kind):
    """See a dataset's fields; change attribute fields until the first import of that kind."""
    if kind not in KINDS:
        raise Http404("No such dataset.")
    project = request.project
    locked = imports.has_imported(project, kind)
    reserved = reserved_names(kind)
    fields = imports.get_schema(project, kind)
    error = ""
    if request.method == "POST" and kind in ("items", "users"):
        try:
            fields = _schema_from_post(request.POST, fields, reserved, locked)
            imports.save_schema(project=project, kind=kind, fields=fields)
        except SchemaError as exc:
            error = str(exc)
        else:
            messages.success(request, f"{kind.capitalize()} schema saved.")
            return redirect("schema-edit", slug=project.slug, kind=kind)
    return render(
        request,
        "datasets/schema.html",
        {
            "project": project,
            "kind": kind,
            "fields": fields,
            "reserved": reserved,
            "locked": locked,
            "editable": kind in ("items", "users"),
            "field_types": [t for t in FIELD_TYPES if t != "id"],
            "error": error,
        },
    )


def _schema_from_post(post, fields, reserved, locked) -> list[Field]:
    """Apply the form: type changes and removals (if not locked) and one new field."""
    updated = []
    for f in fields:
        if f.name in reserved:
            updated.append(f)
            continue
        if not locked and post.get(f"remove_{f.name}"):
            continue
        new_type = post.get(f"type_{f.name}", f.type) if not locked else f.type
        multi = new_type == "categorical" and bool(post.get(f"multi_{f.name}"))
        updated.append(Field(f.name, new_type, multi=multi))
    name = post.get("new_name", "").strip().upper()
    if name:
        new_type = post.get("new_type", "categorical")
        updated.append(
            Field(name, new_type, multi=new_type == "categorical" and bool(post.get("new_multi")))
        )
    return updated
