"""docs/personalize.md, "Migrating from Amazon Personalize": files laid out like a Personalize
dataset export import unchanged, and PutItems/PutUsers properties (camelCase keys, values as
text) land in the fields those files created."""

import pytest

from datasets import imports
from datasets.imports import get_schema
from datasets.models import EndUser, Interaction, Item
from feeds.personalize import events
from feeds.personalize.errors import InvalidInput

pytestmark = pytest.mark.django_db

ITEMS_EXPORT = (
    "ITEM_ID,CREATION_TIMESTAMP,GENRES,PRICE,NUMBER_OF_RATINGS,DESCRIPTION\n"
    "i1,1700000000,Action|Comedy,9.5,12,A long description of a film with plenty of words in it\n"
    "i2,1700000100,Drama,12,3,Another long description of a film about something else entirely\n"
)
USERS_EXPORT = "USER_ID,MEMBERSHIP,AGE\nu1,premium,34\nu2,free,27\n"
INTERACTIONS_EXPORT = (
    "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,IMPRESSION,RECOMMENDATION_ID,DEVICE\n"
    "u1,i1,1700000200,click,,i1|i2,rec1,ios\n"
    "u2,i2,1700000300,watch,3.5,,,android\n"
)


@pytest.fixture
def migrated(project, data_dirs, tmp_path):
    for kind, text in (
        ("items", ITEMS_EXPORT),
        ("users", USERS_EXPORT),
        ("interactions", INTERACTIONS_EXPORT),
    ):
        path = tmp_path / f"{kind}.csv"
        path.write_text(text)
        job = imports.import_file(project=project, kind=kind, path=path)
        assert job.status == "succeeded", job.error
        assert job.report["rejected"] == 0
    return project


def test_a_personalize_export_imports_as_is(migrated):
    fields = {f.name: f for f in get_schema(migrated, "items")}
    assert fields["GENRES"].type == "categorical" and fields["GENRES"].multi
    assert fields["PRICE"].type == "numeric"
    i1 = Item.objects.get(project=migrated, external_id="i1")
    assert i1.creation_timestamp == 1700000000
    assert i1.attributes["GENRES"] == ["Action", "Comedy"]
    click = Interaction.objects.get(project=migrated, recommendation_id="rec1")
    assert (click.event_type, click.impression, click.timestamp) == ("click", "i1|i2", 1700000200)
    # A contextual column recsite has no field for is left out, not an error.
    assert Interaction.objects.filter(project=migrated).count() == 2


def test_put_items_properties_land_in_the_exported_fields(migrated):
    accepted = events.put_items(
        migrated,
        {
            "datasetArn": events.dataset_arn(migrated, "items"),
            "items": [
                {
                    "itemId": "i3",
                    "properties": '{"genres": "Horror|Thriller", "price": "7.25",'
                    ' "numberOfRatings": 4, "creationTimestamp": "2024-05-01T12:00:00Z"}',
                }
            ],
        },
    )
    assert accepted == 1
    i3 = Item.objects.get(project=migrated, external_id="i3")
    assert i3.attributes == {
        "GENRES": ["Horror", "Thriller"],
        "PRICE": 7.25,
        "NUMBER_OF_RATINGS": 4,
    }
    assert i3.creation_timestamp == 1714564800
    assert set(i3.attributes) <= {f.name for f in get_schema(migrated, "items")}


def test_put_users_properties_and_bad_values(migrated):
    events.put_users(
        migrated,
        {
            "datasetArn": events.dataset_arn(migrated, "users"),
            "users": [{"userId": "u3", "properties": '{"membership": "free", "age": "41"}'}],
        },
    )
    u3 = EndUser.objects.get(project=migrated, external_id="u3")
    assert u3.attributes == {"MEMBERSHIP": "free", "AGE": 41.0}
    # recsite's validation of /api/v1/users applies: nested objects are not attribute values.
    with pytest.raises(
        InvalidInput,
        match=r"users\[0\]\.properties: address \(the ADDRESS field\): Must be a string",
    ):
        events.put_users(
            migrated,
            {
                "datasetArn": events.dataset_arn(migrated, "users"),
                "users": [{"userId": "u4", "properties": '{"address": {"city": "Oslo"}}'}],
            },
        )
    assert not EndUser.objects.filter(project=migrated, external_id="u4").exists()
