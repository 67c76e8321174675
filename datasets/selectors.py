"""Reads for projects, always scoped to what the user may see."""

from django.http import Http404

from datasets.models import Project


def projects_for_user(user):
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user).order_by("name")


def project_for_member(*, user, slug: str) -> Project:
    """The project with ``slug`` if ``user`` is a member; 404 otherwise (never leak existence)."""
    project = projects_for_user(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project, or you are not a member of it.")
    return project
