from functools import wraps

from django.contrib import messages
from django.shortcuts import redirect, render

from datasets import selectors, services
from datasets.forms import ProjectForm


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
        {"project": request.project, "memberships": memberships},
    )
