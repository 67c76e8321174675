import json
import time
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets import store
from datasets.models import EndUser, Interaction, Item
from datasets.services import create_api_key, create_project
from recsite import api_parsers

pytestmark = pytest.mark.django_db

MAY_FIRST = int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp())


@pytest.fixture
def api(client, project):
    """POST a JSON body (or raw text) to an API endpoint with the project's key."""
    _, key = create_api_key(project=project, name="tests")

    def post(endpoint, body, *, raw=False, content_type="application/json", key=key):
        return client.post(
            reverse(f"api-{endpoint}"),
            body if raw else json.dumps(body),
            content_type=content_type,
            headers={"authorization": f"Bearer {key}"},
        )

    return post


def events_of(project):
    return Interaction.objects.filter(project=project).select_related("user", "item")


def error_of(response, status=400):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["error"]


# --- events -------------------------------------------------------------------------------


def test_a_batch_of_events_is_stored_with_every_field(api, project):
    response = api(
        "events",
        {
            "events": [
                {
                    "user_id": "u1",
                    "item_id": "shoe-1",
                    "event_type": "purchase",
                    "timestamp": MAY_FIRST,
                    "event_value": 59.9,
                    "session_id": "s-9",
                    "recommendation_id": "rec-123",
                    "impression": ["shoe-1", "shoe-2", "hat-3"],
                },
                {"user_id": 42, "item_id": "shoe-2", "impression": "shoe-2|shoe-4"},
            ]
        },
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "rejected": []}
    first, second = events_of(project).order_by("id")
    assert (first.user.external_id, first.item.external_id) == ("u1", "shoe-1")
    assert (first.event_type, first.timestamp, first.event_value) == ("purchase", MAY_FIRST, 59.9)
    assert (first.session_id, first.recommendation_id) == ("s-9", "rec-123")
    assert first.impression == "shoe-1|shoe-2|hat-3"
    assert second.user.external_id == "42"
    assert second.impression == "shoe-2|shoe-4"
    assert (second.event_type, second.event_value, second.session_id) == ("", None, "")
    assert abs(second.timestamp - time.time()) < 60  # no timestamp: now


@pytest.mark.parametrize(
    "timestamp",
    [
        MAY_FIRST,
        MAY_FIRST * 1000 + 999,
        float(MAY_FIRST) + 0.5,
        str(MAY_FIRST),
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",
    ],
    ids=["seconds", "milliseconds", "float", "text", "iso-z", "iso-offset", "iso-naive-utc"],
)
def test_timestamps_in_seconds_milliseconds_or_iso_8601(api, project, timestamp):
    response = api("events", {"events": [{"user_id": "u", "item_id": "i", "timestamp": timestamp}]})
    assert response.json()["accepted"] == 1
    assert events_of(project).get().timestamp == MAY_FIRST


def test_events_for_unknown_items_and_users_create_them_outside_the_catalog(api, project):
    Item.objects.create(project=project, external_id="known", in_catalog=True)
    api("events", {"events": [{"user_id": "new-user", "item_id": i} for i in ("known", "new")]})
    assert Item.objects.get(project=project, external_id="new").in_catalog is False
    assert Item.objects.get(project=project, external_id="known").in_catalog is True
    assert EndUser.objects.get(project=project, external_id="new-user").in_catalog is False
    assert Item.objects.filter(project=project).count() == 2


def test_invalid_events_are_reported_by_index_and_valid_ones_stored(api, project):
    response = api(
        "events",
        {
            "events": [
                {"user_id": "u1", "item_id": "i1"},
                {"user_id": "", "item_id": "i1", "event_value": -1},
                {"user_id": "u2", "item_id": "i2", "timestamp": "yesterday"},
                "not an event",
                {"user_id": "u3", "item_id": "i3", "event_value": 2},
                {"user_id": "u4", "item_id": "x" * 257, "userId": "typo"},
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 2
    rejected = {r["index"]: r["errors"] for r in body["rejected"]}
    assert set(rejected) == {1, 2, 3, 5}
    assert set(rejected[1]) == {"user_id", "event_value"}
    assert "negative" in rejected[1]["event_value"][0]
    assert "ISO 8601" in rejected[2]["timestamp"][0]
    assert rejected[3] == {"non_field_errors": ["Must be a JSON object."]}
    assert "256" in rejected[5]["item_id"][0]
    assert "Unknown field" in rejected[5]["userId"][0]
    stored = sorted(events_of(project).values_list("user__external_id", flat=True))
    assert stored == ["u1", "u3"]
    assert not EndUser.objects.filter(external_id__in=["u2", "u4"]).exists()


@pytest.mark.parametrize(
    ("event", "field", "fragment"),
    [
        ({"item_id": "i"}, "user_id", "Required"),
        ({"user_id": "u"}, "item_id", "Required"),
        ({"user_id": ["u"], "item_id": "i"}, "user_id", "string"),
        ({"user_id": True, "item_id": "i"}, "user_id", "string"),
        ({"user_id": "   ", "item_id": "i"}, "user_id", "empty"),
        ({"user_id": "u\x00", "item_id": "i"}, "user_id", "NUL"),
        ({"user_id": "\ud800", "item_id": "i"}, "user_id", "Unicode"),
        ({"user_id": "u", "item_id": "i", "timestamp": -5}, "timestamp", "1970"),
        ({"user_id": "u", "item_id": "i", "timestamp": "1969-12-31"}, "timestamp", "1970"),
        ({"user_id": "u", "item_id": "i", "timestamp": "2100-01-02"}, "timestamp", "2100"),
        ({"user_id": "u", "item_id": "i", "timestamp": "NaN"}, "timestamp", "Not a timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": True}, "timestamp", "Not a timestamp"),
        ({"user_id": "u", "item_id": "i", "event_value": "1"}, "event_value", "number"),
        ({"user_id": "u", "item_id": "i", "event_type": "v" * 65}, "event_type", "64"),
        (
            {"user_id": "u", "item_id": "i", "recommendation_id": "r" * 65},
            "recommendation_id",
            "64",
        ),
        (
            {"user_id": "u", "item_id": "i", "impression": [f"i{n}" for n in range(501)]},
            "impression",
            "500",
        ),
        ({"user_id": "u", "item_id": "i", "impression": ["a", ""]}, "impression", "Item id 2"),
        ({"user_id": "u", "item_id": "i", "impression": ["a|b"]}, "impression", "separator"),
        ({"user_id": "u", "item_id": "i", "impression": {"a": 1}}, "impression", "list"),
    ],
)
def test_each_bad_value_is_named_with_a_reason(api, project, event, field, fragment):
    error = error_of(api("events", {"events": [event]}))
    assert error["code"] == "invalid_records"
    assert error["message"] == "None of the 1 events is valid; nothing was stored."
    [rejected] = error["rejected"]
    assert rejected["index"] == 0
    assert fragment in rejected["errors"][field][0]
    assert not events_of(project).exists()


def test_numbers_too_large_for_a_float_are_rejected_not_stored_as_infinity(api, project):
    raw = '{"events": [{"user_id": "u", "item_id": "i", "timestamp": 1e400, "event_value": 1e400}]}'
    [rejected] = error_of(api("events", raw, raw=True))["rejected"]
    assert "Not a timestamp" in rejected["errors"]["timestamp"][0]
    assert "finite" in rejected["errors"]["event_value"][0]


def test_an_impression_of_500_ids_is_accepted(api, project):
    shown = [f"item-{n}" for n in range(500)]
    response = api("events", {"events": [{"user_id": "u", "item_id": "i", "impression": shown}]})
    assert response.json()["accepted"] == 1
    assert events_of(project).get().impression.split("|") == shown


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"events": []}, "events", "1 to 500"),
        ({"events": [{"user_id": "u", "item_id": "i"}] * 501}, "events", "(got 501)"),
        ({"events": {"user_id": "u"}}, "events", "list"),
        ({}, "events", "Required"),
        ([{"user_id": "u", "item_id": "i"}], "non_field_errors", '{"events": [...]}'),
        ({"events": [], "project": "other"}, "project", "API key decides the project"),
    ],
    ids=["empty", "too-many", "not-a-list", "missing", "bare-list", "extra-key"],
)
def test_a_bad_batch_is_a_400_naming_the_field(api, project, body, field, fragment):
    error = error_of(api("events", body))
    assert error["code"] == "invalid"
    assert fragment in error["fields"][field][0]
    assert error["message"].endswith(error["fields"][field][0])
    assert not events_of(project).exists()


def test_a_batch_of_500_is_accepted(api, project):
    events = [{"user_id": f"u{n % 37}", "item_id": f"i{n % 101}"} for n in range(500)]
    assert api("events", {"events": events}).json() == {"accepted": 500, "rejected": []}
    assert events_of(project).count() == 500


@pytest.mark.parametrize(
    "raw",
    [
        '{"events": [',
        "",
        "\xff\xfe{}",
        '{"events": [{"user_id": "u", "event_value": NaN}]}',
        "[" * 100_000,
    ],
    ids=["truncated", "empty-with-json-type", "not-utf8", "nan-literal", "deep-nesting"],
)
def test_malformed_json_is_a_400_with_a_message(api, project, raw):
    response = api("events", raw.encode("latin-1") if raw.startswith("\xff") else raw, raw=True)
    if raw == "":
        # An empty body is an empty object to DRF: the batch is missing.
        assert error_of(response)["fields"]["events"]
        return
    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert error["message"].startswith("The request body is not valid JSON")


def test_a_body_that_is_not_json_is_a_415(api, project):
    error = error_of(api("events", "user_id=u", raw=True, content_type="text/plain"), 415)
    assert error["code"] == "unsupported_media_type"


def test_a_body_over_the_size_limit_is_a_413(api, project, monkeypatch):
    monkeypatch.setattr(api_parsers, "MAX_BODY_BYTES", 1000)
    events = [{"user_id": f"user-{n}", "item_id": "i"} for n in range(100)]
    error = error_of(api("events", {"events": events}), 413)
    assert error["code"] == "request_too_large"
    assert not events_of(project).exists()


def test_a_server_fault_is_a_json_500_and_stores_nothing(api, project, monkeypatch):
    def broken_insert(project_id, rows):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "insert_interactions", broken_insert)
    error = error_of(api("events", {"events": [{"user_id": "new", "item_id": "new"}]}), 500)
    assert error["code"] == "server_error"
    assert error["message"].startswith("Something went wrong on the server.")
    assert not EndUser.objects.filter(project=project).exists()  # rolled back with the batch


def test_get_is_a_405_in_the_same_format(client, project):
    _, key = create_api_key(project=project, name="k")
    response = client.get(reverse("api-events"), headers={"authorization": f"Bearer {key}"})
    assert error_of(response, 405)["code"] == "method_not_allowed"


def test_an_unknown_api_url_is_a_json_404(client):
    error = error_of(client.post("/api/v1/events/"), 404)
    assert error["code"] == "not_found"
    assert "did you mean /api/v1/events?" in error["message"]
    assert error_of(client.get("/api/v1/nothing"), 404)["code"] == "not_found"


# --- isolation ----------------------------------------------------------------------------


def test_a_key_writes_only_to_its_own_project(api, project, user):
    other = create_project(name="Other shop", owner=user)
    Item.objects.create(project=other, external_id="shared-id", in_catalog=True)
    api("events", {"events": [{"user_id": "u1", "item_id": "shared-id"}]})
    api("users", {"users": [{"user_id": "u1", "properties": {"tier": "gold"}}]})
    api("items", {"items": [{"item_id": "shared-id", "properties": {"colour": "red"}}]})

    assert not Interaction.objects.filter(project=other).exists()
    assert not EndUser.objects.filter(project=other).exists()
    assert Item.objects.get(project=other, external_id="shared-id").attributes == {}
    mine = Item.objects.get(project=project, external_id="shared-id")
    assert mine.attributes == {"colour": "red"}
    assert events_of(project).get().item_id == mine.pk


def test_a_key_cannot_address_another_project(api, project, user):
    other = create_project(name="Other shop", owner=user)
    for body in (
        {"events": [{"user_id": "u", "item_id": "i"}], "project": other.slug},
        {"events": [{"user_id": "u", "item_id": "i", "project": other.slug}]},
        {"events": [{"user_id": "u", "item_id": "i", "project_id": other.pk}]},
    ):
        assert api("events", body).status_code == 400
    assert not Interaction.objects.exists()


def test_the_other_projects_key_writes_there(client, project, user):
    other = create_project(name="Other shop", owner=user)
    _, other_key = create_api_key(project=other, name="theirs")
    client.post(
        reverse("api-events"),
        json.dumps({"events": [{"user_id": "u", "item_id": "i"}]}),
        content_type="application/json",
        headers={"authorization": f"Bearer {other_key}"},
    )
    assert events_of(other).count() == 1
    assert not events_of(project).exists()


# --- users and items ----------------------------------------------------------------------


def test_users_are_upserted_and_attributes_replaced(api, project):
    EndUser.objects.create(project=project, external_id="u1")  # seen in events only
    first = api(
        "users",
        {
            "users": [
                {"user_id": "u1", "properties": {"tier": "gold", "age": 31, "vip": True}},
                {"user_id": "u2"},
            ]
        },
    )
    assert first.json() == {"accepted": 2, "rejected": []}
    user = EndUser.objects.get(project=project, external_id="u1")
    assert (user.in_catalog, user.attributes) == (True, {"tier": "gold", "age": 31, "vip": True})
    assert EndUser.objects.get(project=project, external_id="u2").attributes == {}

    api("users", {"users": [{"user_id": "u1", "properties": {"tier": "silver", "gone": None}}]})
    user.refresh_from_db()
    assert user.attributes == {"tier": "silver"}
    assert EndUser.objects.filter(project=project).count() == 2


def test_items_are_upserted_keeping_their_id_so_events_stay_attached(api, project):
    api("events", {"events": [{"user_id": "u", "item_id": "shoe"}]})
    item_pk = Item.objects.get(project=project, external_id="shoe").pk
    response = api(
        "items",
        {
            "items": [
                {
                    "item_id": "shoe",
                    "properties": {"category": ["Shoes", "Sale"], "price": 59.5},
                    "creation_timestamp": "2024-05-01T12:00:00Z",
                },
                {"item_id": "hat", "properties": {"category": ["Hats"]}},
            ]
        },
    )
    assert response.json() == {"accepted": 2, "rejected": []}
    shoe = Item.objects.get(project=project, external_id="shoe")
    assert shoe.pk == item_pk
    assert shoe.in_catalog
    assert shoe.attributes == {"category": ["Shoes", "Sale"], "price": 59.5}
    assert shoe.creation_timestamp == MAY_FIRST
    assert events_of(project).get().item_id == item_pk

    api("items", {"items": [{"item_id": "shoe", "properties": {"price": 49}}]})
    shoe.refresh_from_db()
    assert (shoe.attributes, shoe.creation_timestamp) == ({"price": 49}, None)


def test_a_repeated_id_in_one_batch_keeps_the_last_record(api, project):
    response = api(
        "items",
        {
            "items": [
                {"item_id": "a", "properties": {"v": 1}},
                {"item_id": "b", "properties": {"v": 1}},
                {"item_id": "a", "properties": {"v": 2}},
            ]
        },
    )
    assert response.json()["accepted"] == 3
    assert Item.objects.get(project=project, external_id="a").attributes == {"v": 2}


@pytest.mark.parametrize(
    ("properties", "fragment"),
    [
        ({"colour": {"nested": 1}}, "colour: Must be a string, number, boolean or a list"),
        ({"sizes": [1, 2]}, "sizes: A list must hold only strings"),
        ({"bad name": 1}, "must start with a letter"),
        ({"item_id": "x"}, "top-level field"),
        ({"text": "t" * 20_001}, "20000"),
        ({f"p{n}": n for n in range(101)}, "At most 100"),
        ("red", "object"),
    ],
)
def test_bad_item_properties_are_rejected_with_the_property_named(
    api, project, properties, fragment
):
    body = {"items": [{"item_id": "ok"}, {"item_id": "bad", "properties": properties}]}
    response = api("items", body)
    assert response.status_code == 200
    [rejected] = response.json()["rejected"]
    assert rejected["index"] == 1
    assert fragment in rejected["errors"]["properties"][0]
    assert list(Item.objects.values_list("external_id", flat=True)) == ["ok"]


def test_a_catalog_batch_with_no_valid_record_is_a_400(api, project):
    error = error_of(api("users", {"users": [{"properties": {}}, {"user_id": "u", "x": 1}]}))
    assert error["code"] == "invalid_records"
    assert [r["index"] for r in error["rejected"]] == [0, 1]
    assert "Required" in error["rejected"][0]["errors"]["user_id"][0]
    assert not EndUser.objects.exists()


def test_more_than_500_users_is_a_400(api, project):
    error = error_of(api("users", {"users": [{"user_id": f"u{n}"} for n in range(501)]}))
    assert "(got 501)" in error["fields"]["users"][0]


# --- robustness ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
EVENT_FIELDS = ("user_id", "item_id", "timestamp", "event_value", "impression", "event_type")
event_like = st.fixed_dictionaries({}, optional=dict.fromkeys(EVENT_FIELDS, json_values))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(event_like | json_values, min_size=1, max_size=5))
def test_no_input_makes_the_events_endpoint_fail(api, events):
    response = api("events", {"events": events})
    assert response.status_code in (200, 400), response.content
    body = response.json()
    assert "accepted" in body or body["error"]["code"] == "invalid_records"
