"""The Experiments pages: create an A/B(/n) test of feeds, start/pause/stop it, read results.

Thin: parse the form, call feeds.experiments (writes and reads), render. Owners and editors
change experiments; viewers read the results.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets.views import project_view
from feeds import experiments
from feeds.models import Experiment, Feed
from feeds.services import InvalidInput
from models_app.selectors import can_change_campaigns

FORM_ROWS = 4
DEFAULT_NAMES = ["control", "b", "c", "d"]


def _can_change(request) -> bool:
    return can_change_campaigns(user=request.user, project=request.project)


def _require_change(request) -> None:
    if not _can_change(request):
        raise PermissionDenied(
            "Viewers can look at experiments but not change them; ask an owner or editor of "
            "the project."
        )


def _experiment(request, name: str) -> Experiment:
    try:
        return experiments.experiment_by_name(request.project, name)
    except Experiment.DoesNotExist:
        raise Http404(f"No experiment named “{name}” in this project.") from None


def _variant_rows(data) -> list[dict]:
    control = data.get("control", "0")
    return [
        {
            "index": i,
            "name": data.get(f"variant_name_{i}", DEFAULT_NAMES[i] if i < 2 else ""),
            "feed": data.get(f"variant_feed_{i}", ""),
            "weight": data.get(f"variant_weight_{i}", "1"),
            "is_control": control == str(i),
        }
        for i in range(FORM_ROWS)
    ]


@project_view
def experiment_list(request):
    can_change = _can_change(request)
    errors, form, status = {}, {}, 200
    if request.method == "POST":
        _require_change(request)
        form = request.POST
        rows = _variant_rows(request.POST)
        target_field = request.POST.get("target_field", "").strip()
        try:
            experiment = experiments.create_experiment(
                project=request.project,
                name=request.POST.get("name", ""),
                description=request.POST.get("description", ""),
                click_event=request.POST.get("click_event", ""),
                conversion_event=request.POST.get("conversion_event", ""),
                target_field=target_field,
                target_values=request.POST.getlist(f"target_value_{target_field}")
                if target_field
                else [],
                variants=[
                    experiments.VariantInput(
                        name=r["name"] if r["feed"] else "",
                        feed=r["feed"] or None,
                        weight=r["weight"],
                        is_control=r["is_control"],
                    )
                    for r in rows
                ],
                user=request.user,
            )
        except InvalidInput as error:
            errors, status = error.errors, 400
        else:
            messages.success(
                request, f"Experiment “{experiment.name}” created as a draft: start it to serve."
            )
            return redirect("experiment-detail", slug=request.project.slug, name=experiment.name)
    else:
        rows = _variant_rows({})
    target_fields = experiments.target_fields(request.project) if can_change else []
    chosen_values = {
        f.name: set(request.POST.getlist(f"target_value_{f.name}")) for f in target_fields
    }
    for f in target_fields:
        f.chosen = chosen_values[f.name]
    return render(
        request,
        "feeds/experiments.html",
        {
            "project": request.project,
            "experiments": experiments.experiments_for_project(request.project),
            "feeds": list(Feed.objects.filter(project=request.project)),
            "rows": rows,
            "target_fields": target_fields,
            "form": form,
            "errors": errors,
            "can_change": can_change,
        },
        status=status,
    )


@project_view
def experiment_detail(request, name):
    experiment = _experiment(request, name)
    results = experiments.experiment_results(experiment)
    for row in results["variants"]:
        for metric, rate in (("ctr", row.stats.ctr), ("conversion", row.stats.conversion)):
            text = ci = ""
            if rate.rate is not None:
                text = f"{100 * rate.rate:.2f}%"
                ci = f"{100 * rate.low:.2f}–{100 * rate.high:.2f}%"
            setattr(row, f"{metric}_text", text)
            setattr(row, f"{metric}_ci", ci)
    charts = []
    if any(row.impressions for row in results["variants"]):
        charts = [
            {
                "element_id": "chart-ctr",
                "title": "CTR per variant",
                "figure": experiments.rate_chart(results, "ctr"),
            },
            {
                "element_id": "chart-conversion",
                "title": "Conversion rate per variant",
                "figure": experiments.rate_chart(results, "conversion"),
            },
        ]
    split = results["split"]
    split_rows = [
        {
            "name": row.variant.name,
            "weight": row.variant.weight,
            "users": row.users,
            "expected": 100 * expected,
            "observed": 100 * observed,
        }
        for row, expected, observed in zip(
            results["variants"], split["expected_shares"], split["observed_shares"], strict=True
        )
    ]
    return render(
        request,
        "feeds/experiment_detail.html",
        {
            "project": request.project,
            "experiment": experiment,
            "results": results,
            "charts": charts,
            "split_rows": split_rows,
            "control_feed": experiments.control_variant(experiment).feed.name,
            "can_change": _can_change(request),
        },
    )


@project_view
@require_POST
def experiment_action(request, name, action):
    _require_change(request)
    experiment = _experiment(request, name)
    try:
        experiment = experiments.change_status(experiment=experiment, action=action)
    except InvalidInput as error:
        messages.error(request, " ".join(error.errors.values()))
    else:
        done = {"start": "is running", "pause": "is paused", "stop": "is stopped"}[action]
        follow = {
            "start": "users get their variant's feed from the next request.",
            "pause": "everyone gets the control feed until you resume; assignments are kept.",
            "stop": "everyone gets the control feed; the results stay here.",
        }[action]
        messages.success(request, f"Experiment “{experiment.name}” {done}: {follow}")
    return redirect("experiment-detail", slug=request.project.slug, name=name)


@project_view
@require_POST
def experiment_weights(request, name):
    _require_change(request)
    experiment = _experiment(request, name)
    weights = {
        v.name: request.POST.get(f"weight_{v.name}", v.weight) for v in experiment.variants.all()
    }
    try:
        experiments.update_experiment(experiment=experiment, weights=weights)
    except InvalidInput as error:
        messages.error(request, " ".join(error.errors.values()))
    else:
        messages.success(request, "Weights saved: only the users needed for the new split move.")
    return redirect("experiment-detail", slug=request.project.slug, name=name)
