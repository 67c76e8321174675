"""The Campaigns page: which version each campaign serves; deploy, roll back, history."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from datasets.views import project_view
from models_app import selectors, services
from models_app.models import ModelVersion, Solution

# The offline metrics shown next to each version.
HEADLINE_METRICS = [
    ("ndcg@10", "NDCG@10"),
    ("recall@10", "Recall@10"),
    ("coverage@10", "Coverage@10"),
]


def _with_headline(version):
    if version is not None and not hasattr(version, "headline"):
        version.headline = [(label, version.metrics.get(key)) for key, label in HEADLINE_METRICS]
    return version


def _require_change(request) -> None:
    if not selectors.can_change_campaigns(user=request.user, project=request.project):
        raise PermissionDenied(
            "Viewers can look at campaigns but not change them; ask an owner or editor."
        )


def _version_from(request, field="version") -> ModelVersion | None:
    value = request.POST.get(field, "").strip()
    if not value:
        return None
    try:
        return ModelVersion.objects.get(pk=int(value), project=request.project)
    except (ValueError, ModelVersion.DoesNotExist):
        raise ValueError(
            f"Model version “{value}” does not exist in this project; pick one from the list."
        ) from None


def _solution_from(request) -> Solution | None:
    value = request.POST.get("solution", "").strip()
    if not value:
        return None
    try:
        return Solution.objects.get(pk=int(value), project=request.project)
    except (ValueError, Solution.DoesNotExist):
        raise ValueError(f"Solution “{value}” does not exist in this project.") from None


def _back(request):
    return redirect("campaigns", slug=request.project.slug)


@project_view
def campaigns(request):
    form = {"name": "", "description": "", "solution": "", "version": "", "auto_deploy": False}
    status = 200
    if request.method == "POST":
        _require_change(request)
        form = {
            "name": request.POST.get("name", "").strip(),
            "description": request.POST.get("description", "").strip(),
            "solution": request.POST.get("solution", ""),
            "version": request.POST.get("version", ""),
            "auto_deploy": bool(request.POST.get("auto_deploy")),
        }
        try:
            campaign = services.create_campaign(
                request.project,
                form["name"],
                description=form["description"],
                solution=_solution_from(request),
                version=_version_from(request),
                auto_deploy=form["auto_deploy"],
                user=request.user,
            )
        except ValueError as exc:
            messages.error(request, str(exc))
            status = 400
        else:
            served = f", serving version #{campaign.version_id}" if campaign.version_id else ""
            messages.success(request, f"Campaign “{campaign.name}” created{served}.")
            return _back(request)
    campaign_list = selectors.campaigns_for_project(request.project)
    for campaign in campaign_list:
        _with_headline(campaign.version)
        _with_headline(campaign.previous_version)
    versions = [_with_headline(v) for v in selectors.deployable_versions(request.project)]
    return render(
        request,
        "models_app/campaigns.html",
        {
            "project": request.project,
            "campaigns": campaign_list,
            "versions": versions,
            "solutions": selectors.solutions_for_project(request.project),
            "history": selectors.campaign_history(request.project),
            "can_change": selectors.can_change_campaigns(
                user=request.user, project=request.project
            ),
            "form": form,
            "max_drop_percent": round(services.AUTO_DEPLOY_MAX_DROP * 100),
        },
        status=status,
    )


@require_POST
@project_view
def campaign_deploy(request, campaign_id):
    _require_change(request)
    campaign = selectors.campaign_in_project(request.project, campaign_id)
    try:
        version = _version_from(request)
        if version is None:
            raise ValueError("Pick the model version to deploy.")
        services.deploy(campaign, version, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"Campaign “{campaign.name}” now serves version #{campaign.version_id}."
        )
    return _back(request)


@require_POST
@project_view
def campaign_rollback(request, campaign_id):
    _require_change(request)
    campaign = selectors.campaign_in_project(request.project, campaign_id)
    try:
        services.rollback(campaign, user=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Rolled back: campaign “{campaign.name}” serves version #{campaign.version_id} "
            f"again (roll back once more to return to #{campaign.previous_version_id}).",
        )
    return _back(request)


@require_POST
@project_view
def campaign_settings(request, campaign_id):
    _require_change(request)
    campaign = selectors.campaign_in_project(request.project, campaign_id)
    try:
        services.update_campaign(
            campaign,
            description=request.POST.get("description", campaign.description),
            solution=_solution_from(request),
            auto_deploy=bool(request.POST.get("auto_deploy")),
        )
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        state = "on" if campaign.auto_deploy else "off"
        messages.success(request, f"Saved “{campaign.name}”: auto-deploy is {state}.")
    return _back(request)


@require_POST
@project_view
def campaign_delete(request, campaign_id):
    _require_change(request)
    campaign = selectors.campaign_in_project(request.project, campaign_id)
    services.delete_campaign(campaign)
    messages.success(
        request,
        f"Campaign “{campaign.name}” deleted; apps asking for it now get a 404. Its model "
        "versions are kept.",
    )
    return _back(request)
