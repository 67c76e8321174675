"""Writes for projects and memberships."""

from django.db import transaction
from django.utils.text import slugify

from datasets.models import Membership, Project


def unique_project_slug(name: str) -> str:
    base = slugify(name)[:50] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_project(*, name: str, owner, description: str = "", slug: str = "") -> Project:
    """Create a project with ``owner`` as its first member."""
    project = Project.objects.create(
        name=name.strip(),
        slug=slug or unique_project_slug(name),
        description=description.strip(),
    )
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    return project


def add_member(*, project: Project, user, role: str = Membership.Role.EDITOR) -> Membership:
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership
