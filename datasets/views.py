from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from datasets import selectors, services
from datasets.forms import ApiKeyForm, ProjectForm


def project_view(view):
    """Resolve ``slug`` to a project the user belongs to (404 otherwise) as ``request.project``."""

    @wraps(view)
    def wrapper(request, slug, *args, **kwargs):
        request.project = selectors.project_for_member(user=request.user, slug=slug)
        request.session["current_project"] = request.project.slug
        return view(request, *args, **kwargs)

    return wrapper


def project_list(request):
    projects = selectors.projects_for_user(request.user)
    return render(request, "datasets/project_list.html", {"projects": projects})


def project_create(request):
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = services.create_project(
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            owner=request.user,
        )
        messages.success(request, f"Project “{project.name}” created.")
        return redirect("project-overview", slug=project.slug)
    return render(request, "datasets/project_form.html", {"form": form})


@project_view
def project_overview(request):
    memberships = request.project.memberships.select_related("user").order_by("joined_at")
    return render(
        request,
        "datasets/project_overview.html",
        {
            "project": request.project,
            "memberships": memberships,
            "datasets": selectors.dataset_summaries(request.project),
        },
    )


@project_view
def project_insights(request):
    return render(
        request,
        "datasets/insights.html",
        {"project": request.project, "insights": selectors.project_insights(request.project)},
    )


@never_cache  # the response may carry a new key in plain text
@project_view
def api_keys(request):
    can_manage = selectors.can_manage_api_keys(user=request.user, project=request.project)
    form = ApiKeyForm(request.POST or None)
    new_key = aws_key_id = aws_secret = None
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Only owners and editors can create API keys.")
        if form.is_valid():
            # Rendered, not redirected: the plaintext exists only in this response and is
            # never put in the session or the database.
            created, new_key = services.create_api_key(
                project=request.project, name=form.cleaned_data["name"], created_by=request.user
            )
            # The same key as AWS credentials for the Personalize-compatible API (shown once).
            from feeds.personalize.auth import aws_credentials

            aws_key_id, aws_secret = aws_credentials(created)
            form = ApiKeyForm()
    return render(
        request,
        "datasets/api_keys.html",
        {
            "project": request.project,
            "api_keys": selectors.api_keys_for_project(request.project),
            "form": form,
            "new_key": new_key,
            "aws_key_id": aws_key_id,
            "aws_secret": aws_secret,
            "can_manage": can_manage,
            "events_url": request.build_absolute_uri(reverse("api-events")),
            **_curl_context(request, new_key),
        },
    )


def _curl_context(request, new_key: str | None) -> dict:
    """What the curl examples need: the key (or a placeholder with its prefix), URLs, a campaign.

    Only a hash of a key is stored, so after the creation response the examples can show only
    the prefix of the newest active key, followed by a placeholder for the secret part.
    """
    from datasets.throttling import describe_rate, parse_rate
    from models_app.models import Campaign

    rate = parse_rate(settings.API_THROTTLE_RATE)
    newest = selectors.api_keys_for_project(request.project).filter(revoked_at__isnull=True)
    newest = newest.first()
    if new_key:
        key_example = new_key
    elif newest is not None:
        key_example = f"{newest.prefix}_<rest-of-the-key>"
    else:
        key_example = "$RECSITE_API_KEY"
    campaign = Campaign.objects.filter(project=request.project).order_by("name").first()
    return {
        "key_example": key_example,
        "key_is_placeholder": not new_key,
        "recommendations_url": request.build_absolute_uri("/api/v1/recommendations"),
        "example_campaign": campaign.name if campaign else "",
        "api_docs_url": reverse("api-docs"),
        "throttle_rate": describe_rate(*rate) if rate else "",
    }


@require_POST
@project_view
def api_key_revoke(request, key_id):
    if not selectors.can_manage_api_keys(user=request.user, project=request.project):
        raise PermissionDenied("Only owners and editors can revoke API keys.")
    api_key = selectors.api_key_in_project(project=request.project, key_id=key_id)
    services.revoke_api_key(api_key=api_key)
    messages.success(request, f"Revoked “{api_key.name}”: requests with it are now refused.")
    return redirect("api-keys", slug=request.project.slug)
