"""`manage.py bootstrap`, the first-run set-up behind `make run`."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from datasets.models import ImportJob, Interaction, Project
from datasets.services import create_api_key
from feeds import feeds
from feeds.models import Feed
from models_app.models import Campaign, CampaignDeployment, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.DEMO_DATA_DIR = tmp_path / "demo"
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return tmp_path


def test_first_run_sets_up_everything_and_a_second_run_changes_nothing(capsys, data_dirs, client):
    call_command("bootstrap", interactions=20_000)
    first = capsys.readouterr().out
    password = (data_dirs / "demo-admin.txt").read_text().split("password: ")[1].strip()
    assert f"password: {password}" in first
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    project = Project.objects.get(slug="demo-shop")
    assert project.memberships.get(user=admin).role == "owner"
    assert Interaction.objects.filter(project=project).count() > 19_000
    assert ImportJob.objects.filter(project=project, status="succeeded").count() == 4
    assert set(ModelVersion.objects.values_list("recipe", flat=True)) == {
        "popularity-count",
        "user-personalization",
    }
    # The campaign "default" serves the personalized version, so a first API call that names
    # no campaign gets recommendations rather than a 404.
    campaign = Campaign.objects.get(project=project)
    personalized = ModelVersion.objects.get(recipe="user-personalization")
    assert campaign.name == "default" and campaign.version_id == personalized.pk
    assert "to the campaign 'default'" in first
    _, key = create_api_key(project=project, name="first call")
    user_id = project.end_users.order_by("pk").values_list("external_id", flat=True)[0]
    response = client.get(
        reverse("api-recommendations"),
        {"user_id": user_id, "num_results": 5},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["campaign"] == "default" and body["version"] == personalized.pk
    assert len(body["items"]) == 5
    # The feed "home" mixes the campaign with trending and popular items, so the Feeds and
    # Experiments pages are not empty on the first visit.
    feed = Feed.objects.get(project=project)
    assert feed.name == "home" and feed.fallback_source == "popular"
    assert [(s.source, s.count) for s in feed.slots.order_by("position")] == [
        ("campaign:default", 3),
        ("trending", 1),
        ("popular", 1),
    ]
    assert "Built the feed 'home'" in first
    page = feeds.serve(project, "home", user_id=user_id, page_size=10, log=False)
    assert len(page.items) == 10 and not page.warnings
    assert {item["source"] for item in page.items} >= {"campaign:default", "trending", "popular"}

    call_command("bootstrap", interactions=20_000)
    second = capsys.readouterr().out
    assert password not in second
    assert "password in" in second
    assert ImportJob.objects.count() == 4
    assert ModelVersion.objects.count() == 2
    assert Campaign.objects.get().version_id == personalized.pk
    assert CampaignDeployment.objects.count() == 1
    assert "Campaign 'default' serves model version" in second
    assert list(Feed.objects.values_list("name", flat=True)) == ["home"]
    assert "Built the feed" not in second and "Feeds already built: home." in second

    # A campaign "default" left serving nothing (made by hand before any model was trained,
    # or its version deleted) gets the personalized version on the next bootstrap.
    Campaign.objects.update(version=None, previous_version=None)
    call_command("bootstrap", interactions=20_000)
    assert "to the campaign 'default'" in capsys.readouterr().out
    assert Campaign.objects.get().version_id == personalized.pk
    assert ModelVersion.objects.count() == 2
