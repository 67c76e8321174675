"""Pages of the models section: recipes, the train form, runs and versions."""

import json

from django.contrib import messages
from django.db.models import Count, F, OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from datasets.views import project_view
from models_app import automl, charts, selectors, services
from models_app.models import ModelVersion, Solution, TrainingRun
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
            "automl_metric": request.POST.get("automl_metric", ""),
        }
        try:
            try:
                params = json.loads(form["params"])
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"Parameters are not valid JSON ({exc.msg} at line {exc.lineno}, column "
                    f'{exc.colno}); write an object such as {{"factors": 64}}.'
                ) from None
            if form["recipe"] == automl.AUTOML and isinstance(params, dict):
                params.setdefault("metric", form["automl_metric"] or automl.DEFAULTS["metric"])
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
            "automl_metrics": automl.FORM_METRICS,
            "automl_defaults": automl.DEFAULTS,
            "event_types": selectors.event_types_in(request.project),
            "runs": selectors.recent_runs(request.project),
            "versions": [(v, [v.metrics.get(key) for key, _ in TABLE_METRICS]) for v in versions],
            "metric_names": [label for _, label in TABLE_METRICS],
            "form": form,
            "solutions": _solution_rows(request.project),
            "retrain_choices": RETRAIN_CHOICES,
            "compare_default": COMPARE_DEFAULT,
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
        "metric_rows": _metric_rows(version),
        "leaderboard": _leaderboard(version),
    }


def _metric_rows(version) -> list[tuple[str, float | None, float | None]]:
    """(label, Personalize split value, Protocol R value) for the run page's metrics table."""
    if version is None:
        return []
    m = version.metrics
    return [(label, m.get(key), m.get(f"r:{key}")) for key, label in TABLE_METRICS]


def _leaderboard(version) -> list[dict]:
    """AutoML trials, best validation value first (failed trials last), with their rank."""
    if version is None or not version.trials:
        return []
    ranked = sorted(
        version.trials,
        key=lambda t: (t.get("value") is None, -(t.get("value") or 0.0)),
    )
    return [
        {**trial, "rank": number, "params_text": json.dumps(trial.get("params") or {})}
        for number, trial in enumerate(ranked, start=1)
    ]


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


# --- solutions and scheduled retraining -----------------------------------------------------

SOLUTION_ROWS = 30


def _every(hours: int) -> str:
    if hours == 1:
        return "every hour"
    if hours == 24:
        return "every day"
    if hours == 168:
        return "every week"
    return f"every {hours} hours"


RETRAIN_CHOICES = [("", "Off")] + [(h, _every(h)) for h in services.RETRAIN_EVERY_HOURS]


def _solution_rows(project) -> dict:
    """The Solutions table: a few queries whatever the number of rows."""
    from django_q.models import Schedule

    newest = ("-created_at", "-pk")
    latest_version = ModelVersion.objects.filter(solution=OuterRef("pk")).order_by(*newest)
    last_run = TrainingRun.objects.filter(solution=OuterRef("pk")).order_by(*newest)
    queryset = Solution.objects.filter(project=project)
    solutions = list(
        queryset.annotate(
            n_versions=Count("versions", distinct=True),
            latest_version_id=Subquery(latest_version.values("pk")[:1]),
            last_run_id=Subquery(last_run.values("pk")[:1]),
        ).order_by(F("retrain_every_hours").asc(nulls_last=True), *newest)[:SOLUTION_ROWS]
    )
    versions = ModelVersion.objects.in_bulk([s.latest_version_id for s in solutions])
    runs = TrainingRun.objects.in_bulk([s.last_run_id for s in solutions if s.last_run_id])
    names = {services.retrain_schedule_name(s.pk): s.pk for s in solutions}
    schedules = {names[x.name]: x for x in Schedule.objects.filter(name__in=list(names))}
    rows = []
    for solution in solutions:
        version = versions.get(solution.latest_version_id)
        rows.append(
            {
                "solution": solution,
                "params": json.dumps(solution.params, sort_keys=True),
                "latest_version": version,
                "ndcg": (version.metrics.get("ndcg@10") if version else None),
                "last_run": runs.get(solution.last_run_id),
                "schedule": schedules.get(solution.pk),
            }
        )
    total = queryset.count() if len(solutions) == SOLUTION_ROWS else len(solutions)
    return {"rows": rows, "total": total}


def _models_url(project, anchor: str = "solutions") -> str:
    return reverse("models", args=[project.slug]) + f"#{anchor}"


@require_POST
@project_view
def solution_schedule(request, solution_id):
    solution = get_object_or_404(Solution, pk=solution_id, project=request.project)
    try:
        schedule = services.set_retraining(solution, request.POST.get("every_hours"))
    except ValueError as exc:
        messages.error(request, f"Solution “{solution.name}”: {exc}")
    else:
        if schedule is None:
            messages.success(request, f"Scheduled retraining of “{solution.name}” is off.")
        else:
            when = timezone.localtime(schedule.next_run).strftime("%Y-%m-%d %H:%M %Z")
            messages.success(
                request,
                f"“{solution.name}” will be retrained "
                f"{_every(solution.retrain_every_hours)}; next run {when}.",
            )
    return redirect(_models_url(request.project))


@require_POST
@project_view
def solution_train(request, solution_id):
    """Retrain now: a new run of an existing solution."""
    solution = get_object_or_404(
        Solution.objects.select_related("project"), pk=solution_id, project=request.project
    )
    try:
        run = services.start_training(solution=solution, user=request.user)
    except ValueError as exc:
        messages.error(request, f"Solution “{solution.name}”: {exc}")
        return redirect(_models_url(request.project))
    messages.success(request, f"Training run #{run.pk} queued.")
    return redirect("training-run", slug=request.project.slug, run_id=run.pk)


# --- comparing versions ---------------------------------------------------------------------

COMPARE_DEFAULT = 6
COMPARE_MAX = 12


def _requested_ids(request) -> tuple[list[int], list[str]]:
    """``?versions=3,5,8`` (or repeated ``versions``, as the checkboxes send): ids and junk."""
    tokens = [
        token.strip().lstrip("#")
        for value in request.GET.getlist("versions")
        for token in value.split(",")
        if token.strip()
    ]
    ids, bad = [], []
    for token in tokens:
        if token.isascii() and token.isdigit() and len(token) < 12:
            ids.append(int(token))
        else:
            bad.append(token)
    return list(dict.fromkeys(ids)), bad


def _version_summary(version) -> dict:
    run = version.run
    return {
        "label": f"#{version.pk} {version.recipe}",
        "metrics": version.metrics or {},
        "duration_seconds": run.duration_seconds,
        "peak_memory_bytes": run.peak_memory_bytes,
    }


def _left_out(figure: dict) -> str:
    left_out = figure["layout"]["meta"]["left_out"]
    if not left_out:
        return ""
    return f" Not on a 0–1 scale, so only in the table: {', '.join(left_out)}."


@project_view
def compare_versions(request):
    project = request.project
    ids, bad = _requested_ids(request)
    problems = []
    versions_qs = ModelVersion.objects.select_related("solution", "run")
    if bad:
        problems.append(
            f"Not a model version number: {', '.join(repr(b[:30]) for b in bad[:5])}. Give version "
            "numbers separated by commas, e.g. ?versions=3,5,8."
        )
    if len(ids) > COMPARE_MAX:
        problems.append(
            f"{len(ids)} versions were asked for; at most {COMPARE_MAX} can be compared at "
            f"once. Showing the first {COMPARE_MAX}."
        )
        ids = ids[:COMPARE_MAX]
    if ids:
        found = {v.pk: v for v in versions_qs.filter(pk__in=ids)}
        if any(v.project_id != project.pk for v in found.values()):
            raise Http404("No such model version in this project.")
        missing = [i for i in ids if i not in found]
        if missing:
            problems.append(
                f"No model version {', '.join(f'#{i}' for i in missing)} in this project; "
                "pick versions from the Model versions table."
            )
        versions = sorted(found.values(), key=lambda v: (v.created_at, v.pk))
    elif not bad:
        recent = versions_qs.filter(project=project).order_by("-created_at", "-pk")
        versions = list(reversed(recent[:COMPARE_DEFAULT]))
    else:
        versions = []
    for problem in problems:
        messages.error(request, problem)
    for version in versions:
        version.params_json = json.dumps(version.params, sort_keys=True)
    summaries = [_version_summary(v) for v in versions]
    chart_list = []
    if summaries:
        personalize = charts.metrics_chart(summaries)
        chart_list.append(
            {
                "element_id": "chart-metrics",
                "title": "Offline metrics at 10 (Personalize's protocol)",
                "caption": "Newest 10% of the interactions of a random 10% of users held out."
                + _left_out(personalize),
                "figure": personalize,
            }
        )
        if charts.metric_keys(summaries, protocol_r=True):
            protocol_r = charts.metrics_chart(summaries, protocol_r=True)
            chart_list.append(
                {
                    "element_id": "chart-metrics-r",
                    "title": "Offline metrics at 10 (Protocol R)",
                    "caption": "RecBole's random 80/10/10 split per user." + _left_out(protocol_r),
                    "figure": protocol_r,
                }
            )
        chart_list.append(
            {
                "element_id": "chart-resources",
                "title": "Training duration and peak memory",
                "caption": "Whole training run: reading data, evaluation, final fit, saving.",
                "figure": charts.resources_chart(summaries),
            }
        )
    return render(
        request,
        "models_app/compare.html",
        {
            "project": project,
            "versions": versions,
            "charts": chart_list,
            "table": charts.metrics_table(summaries) if summaries else [],
            "compare_max": COMPARE_MAX,
        },
        status=400 if problems and not versions else 200,
    )
