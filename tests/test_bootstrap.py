"""`manage.py bootstrap`, the first-run set-up behind `make run`."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from datasets.models import ImportJob, Interaction, Project
from models_app.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.DEMO_DATA_DIR = tmp_path / "demo"
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return tmp_path


def test_first_run_sets_up_everything_and_a_second_run_changes_nothing(capsys, data_dirs):
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

    call_command("bootstrap", interactions=20_000)
    second = capsys.readouterr().out
    assert password not in second
    assert "password in" in second
    assert ImportJob.objects.count() == 4
    assert ModelVersion.objects.count() == 2
