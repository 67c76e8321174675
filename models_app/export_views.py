"""Pages of batch exports: the list and form, an export's status page, cancel and download."""

from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets.views import project_view
from models_app import exports
from models_app.models import BatchExport, ModelVersion


def _export(request, export_id) -> BatchExport:
    export = exports.export_in_project(request.project, export_id)
    if export.status == BatchExport.Status.RUNNING:  # is its worker still alive?
        exports.fail_stale_exports(request.project)
        export.refresh_from_db()
    return export


@project_view
def exports_page(request):
    exports.fail_stale_exports(request.project)
    versions = exports.exportable_versions(request.project)
    form = {
        "version": request.GET.get("version") or (str(versions[0].pk) if versions else ""),
        "format": BatchExport.Format.CSV,
        "num_results": 25,
        "exclude_seen": True,
    }
    status = 200
    if request.method == "POST":
        form = {
            "version": request.POST.get("version", ""),
            "format": request.POST.get("format", ""),
            "num_results": request.POST.get("num_results", "").strip(),
            "exclude_seen": bool(request.POST.get("exclude_seen")),
        }
        version = None
        if form["version"].isdigit():
            version = ModelVersion.objects.filter(
                pk=int(form["version"]), project=request.project
            ).first()
        try:
            if version is None:
                raise ValueError("Choose a model version of this project to export.")
            export = exports.start_export(
                project=request.project,
                version=version,
                format=form["format"],
                num_results=form["num_results"],
                exclude_seen=form["exclude_seen"],
                user_list=request.FILES.get("users"),
                user=request.user,
            )
        except ValueError as exc:
            messages.error(request, str(exc))
            status = 400
        else:
            messages.success(request, f"Batch export #{export.pk} queued.")
            return redirect("export", slug=request.project.slug, export_id=export.pk)
    return render(
        request,
        "models_app/exports.html",
        {
            "project": request.project,
            "versions": [(v, v.metrics.get("ndcg@10")) for v in versions],
            "exports": exports.recent_exports(request.project),
            "formats": BatchExport.Format.choices,
            "max_results": exports.MAX_RESULTS,
            "form": form,
        },
        status=status,
    )


def _context(request, export):
    duration = None
    if export.started_at and export.finished_at:
        duration = (export.finished_at - export.started_at).total_seconds()
    return {
        "duration": duration,
        "project": request.project,
        "export": export,
        "progress": exports.read_progress(export),
        "summary": exports.read_summary(export),
        "log": exports.read_log(export),
        "download": exports.download_path(export),
        "download_name": exports.download_name(export),
    }


@project_view
def export_page(request, export_id):
    export = _export(request, export_id)
    return render(request, "models_app/export.html", _context(request, export))


@project_view
def export_progress(request, export_id):
    """The htmx-polled panel; when the export has finished, reload the whole page."""
    export = _export(request, export_id)
    response = render(request, "models_app/_export_progress.html", _context(request, export))
    if request.GET.get("watching") and export.is_finished:
        response["HX-Refresh"] = "true"
    return response


@require_POST
@project_view
def export_cancel(request, export_id):
    export = _export(request, export_id)
    exports.request_cancel(export)
    messages.info(request, "Cancelling; no file will be kept from this export.")
    return redirect("export", slug=request.project.slug, export_id=export.pk)


@project_view
def export_download(request, export_id):
    """Stream the finished file to a project member (everyone else got a 404 already)."""
    export = _export(request, export_id)
    path = exports.download_path(export)
    if path is None:
        raise Http404("This export has no file to download (yet).")
    content_type = "text/csv" if export.format == BatchExport.Format.CSV else "application/jsonl"
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=exports.download_name(export),
        content_type=f"{content_type}; charset=utf-8",
    )
