import pytest
from django.urls import reverse

from datasets.models import Membership, Project
from datasets.services import add_member, create_project

pytestmark = pytest.mark.django_db


def test_creating_a_project_from_the_ui_makes_the_creator_its_owner(logged_in_client, user):
    response = logged_in_client.post(
        reverse("project-create"), {"name": "Book club", "description": "Reads"}
    )
    project = Project.objects.get(name="Book club")
    assert response.status_code == 302
    assert response["Location"] == reverse("project-overview", args=[project.slug])
    assert Membership.objects.get(project=project, user=user).role == "owner"


def test_blank_project_name_is_refused_with_a_message(logged_in_client):
    response = logged_in_client.post(reverse("project-create"), {"name": "   "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Project.objects.exists()


def test_slugs_stay_unique(user):
    first = create_project(name="Shop", owner=user)
    second = create_project(name="Shop", owner=user)
    assert (first.slug, second.slug) == ("shop", "shop-2")


def test_project_list_shows_only_my_projects(logged_in_client, user, other_user):
    create_project(name="Mine", owner=user)
    create_project(name="Secret plans", owner=other_user)
    page = logged_in_client.get(reverse("project-list")).content.decode()
    assert "Mine" in page
    assert "Secret plans" not in page


def test_a_non_member_gets_404_not_the_project(client, project, other_user):
    client.force_login(other_user)
    response = client.get(reverse("project-overview", args=[project.slug]))
    assert response.status_code == 404
    assert project.name not in response.content.decode()


def test_added_member_can_open_the_project(client, project, other_user):
    add_member(project=project, user=other_user, role="viewer")
    client.force_login(other_user)
    response = client.get(reverse("project-overview", args=[project.slug]))
    assert response.status_code == 200
    assert project.name in response.content.decode()


def test_switcher_lists_my_projects_and_marks_the_current_one(logged_in_client, user, project):
    create_project(name="Second shop", owner=user)
    page = logged_in_client.get(reverse("project-overview", args=[project.slug])).content.decode()
    assert 'id="project-switcher"' in page
    assert "Second shop" in page
    assert f'value="/p/{project.slug}/" selected' in page
