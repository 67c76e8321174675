"""recsite.prepared: the hot read queries, prepared on PostgreSQL, ordinary elsewhere."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from datasets.models import EndUser, Interaction, Item
from datasets.services import create_project
from feeds import selectors
from recsite import prepared

pytestmark = pytest.mark.django_db

SQL = "SELECT id, external_id FROM datasets_enduser WHERE project_id = %s ORDER BY id"


@pytest.fixture
def project(django_user_model):
    owner = django_user_model.objects.create(username="owner")
    project = create_project(name="Prepared", owner=owner)
    EndUser.objects.bulk_create([EndUser(project=project, external_id=f"u{n}") for n in range(3)])
    return project


def test_rows_and_recorded_like_any_query(project):
    with CaptureQueriesContext(connection) as captured:
        rows = prepared.fetchall(SQL, [project.pk])
        again = prepared.fetchall(SQL, [project.pk])
    assert [external for _, external in rows] == ["u0", "u1", "u2"]
    assert again == rows
    assert len(captured.captured_queries) == 2
    assert "datasets_enduser" in captured.captured_queries[0]["sql"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
def test_postgresql_plans_once_per_connection(project):
    prepared.fetchall(SQL, [project.pk])
    prepared.fetchall(SQL, [project.pk])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%FROM datasets_enduser WHERE project_id = $1%"],
        )
        assert cursor.fetchone()[0] == 1


def test_errors_are_djangos_and_the_connection_stays_usable(project):
    with pytest.raises(DatabaseError), transaction.atomic():
        prepared.fetchall("SELECT no_such_column FROM datasets_enduser WHERE id = %s", [1])
    assert len(prepared.fetchall(SQL, [project.pk])) == 3


def test_user_history_newest_first_through_the_prepared_query(project):
    item = Item.objects.create(project=project, external_id="i1")
    user = EndUser.objects.get(project=project, external_id="u1")
    Interaction.objects.bulk_create(
        [
            Interaction(project=project, user=user, item=item, event_type=kind, timestamp=ts)
            for kind, ts in [("view", 100), ("purchase", 300), ("click", 200)]
        ]
    )
    history = selectors.user_history(project, "u1")
    assert history.user_pk == user.pk
    assert history.event_types.tolist() == ["purchase", "click", "view"]
    assert history.timestamps.tolist() == [300, 200, 100]
    assert len(selectors.user_history(project, "u0")) == 0
    assert len(selectors.user_history(project, "nobody")) == 0
