"""Pages of the models section: recipes, the train form, runs and versions."""

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets.views import project_view
from models_app import selectors, services
from models_app.models import TrainingRun
from models_app.recipes import available_recipes

# Metrics shown side by side in the versions table.
TABLE_METRICS = [
    ("precision@10", "P@10"),
    ("recall@10", "R@10"),
    ("ndcg@5", "NDCG@5"),
    ("ndcg@10", "NDCG@10"),
    ("ndcg@25", "NDCG@25"),
    ("mrr@25", "MRR@25"),
    ("hit@10", "Hit@10"),
    ("coverage@10", "Coverage@10"),
    ("novelty@10", "Novelty@10"),
    ("diversity@10", "Diversity@10"),
    ("pop_percentile@10", "Pop. pct@10"),
]


def _run(request, run_id) -> TrainingRun:
    run = selectors.run_in_project(request.project, run_id)
    if run.status == TrainingRun.Status.RUNNING:  # is its worker still alive?
        services.fail_stale_runs(request.project)
        run.refresh_from_db()
    return run


@project_view
def models_overview(request):
    services.fail_stale_runs(request.project)
    form = {
        "recipe": "user-personalization",
        "params": "{}",
        "event_types": [],
    }
    if request.method == "POST":
        form = {
            "recipe": request.POST.get("recipe", ""),
            "params": request.POST.get("params", "").strip() or "{}",
            "event_types": request.POST.getlist("event_types"),
        }
        try:
            try:
                params = json.loads(form["params"])
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"Parameters are not valid JSON ({exc.msg} at line {exc.lineno}, column "
                    f'{exc.colno}); write an object such as {{"factors": 64}}.'
                ) from None
            solution = services.create_solution(
                project=request.project,
                recipe=form["recipe"],
                params=params,
                event_types=form["event_types"],
            )
            run = services.start_training(solution=solution, user=request.user)
        except ValueError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Training run #{run.pk} queued.")
            return redirect("training-run", slug=request.project.slug, run_id=run.pk)
    versions = selectors.recent_versions(request.project)
    return render(
        request,
        "models_app/models.html",
        {
            "project": request.project,
            "recipes": available_recipes(),
            "event_types": selectors.event_types_in(request.project),
            "runs": selectors.recent_runs(request.project),
            "versions": [(v, [v.metrics.get(key) for key, _ in TABLE_METRICS]) for v in versions],
            "metric_names": [label for _, label in TABLE_METRICS],
            "form": form,
        },
        status=400 if request.method == "POST" else 200,
    )


def _run_context(request, run):
    version = getattr(run, "version", None) if run.status == TrainingRun.Status.SUCCEEDED else None
    headline = []
    if version is not None:
        headline = [
            (label, version.metrics[key])
            for key, label in (("ndcg@10", "NDCG@10"), ("recall@10", "recall@10"),
                               ("coverage@10", "coverage@10"))
            if key in version.metrics
        ]  # fmt: skip
    return {
        "project": request.project,
        "run": run,
        "version": version,
        "headline": headline,
        "progress": services.read_progress(run),
        "log": services.read_log(run),
    }


@project_view
def training_run(request, run_id):
    run = _run(request, run_id)
    return render(request, "models_app/run.html", _run_context(request, run))


@project_view
def training_run_progress(request, run_id):
    """The htmx-polled panel; when the run has finished, reload the whole page."""
    run = _run(request, run_id)
    response = render(request, "models_app/_run_progress.html", _run_context(request, run))
    if request.GET.get("watching") and run.is_finished:
        response["HX-Refresh"] = "true"
    return response


@require_POST
@project_view
def training_run_cancel(request, run_id):
    run = _run(request, run_id)
    services.request_cancel(run)
    messages.info(request, "Cancelling; no model version will be created from this run.")
    return redirect("training-run", slug=request.project.slug, run_id=run.pk)


@require_POST
@project_view
def training_run_retry(request, run_id):
    run = _run(request, run_id)
    try:
        new = services.retry(run, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("training-run", slug=request.project.slug, run_id=run.pk)
    messages.success(request, f"Training run #{new.pk} queued.")
    return redirect("training-run", slug=request.project.slug, run_id=new.pk)
