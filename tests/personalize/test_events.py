"""PutEvents, PutItems and PutUsers through boto3's ``personalize-events`` client against a
live server: what is sent is stored like /api/v1/ writes and changes the next recommendation;
bad input gets the error codes the SDK models."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from datasets.models import EndUser, Interaction, Item
from feeds.personalize import events as pz_events


@pytest.fixture(scope="module")
def shop(personalize_shop):
    return personalize_shop


@pytest.fixture(scope="module")
def pz_events_client(shop, boto3_client):
    return boto3_client("personalize-events", shop.access_key, shop.secret)


@pytest.fixture(scope="module")
def unvalidated_client(shop, boto3_client):
    """A client that sends what it is given, so the server's own checks answer."""
    return boto3_client(
        "personalize-events", shop.access_key, shop.secret, parameter_validation=False
    )


def _code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def _item_ids(response) -> list[str]:
    return [entry["itemId"] for entry in response["itemList"]]


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_put_events_change_the_next_recommendation(shop, runtime, pz_events_client):
    served = runtime.get_recommendations(
        campaignArn=shop.campaign_arn, userId="u00007", numResults=10
    )
    before = _item_ids(served)
    bought = before[:3]
    rec_id = served["recommendationId"]  # attributes the purchases to this list
    pz_events_client.put_events(
        trackingId=pz_events.tracking_id(shop.project),
        userId="u00007",
        sessionId="sess-u7",
        eventList=[
            {
                "eventId": f"e{n}",
                "eventType": "purchase",
                "eventValue": 2.5,
                "itemId": item_id,
                "sentAt": int(time.time()),
                "recommendationId": rec_id,
                "impression": before[:5],
                "properties": '{"device": "ios"}',
                "metricAttribution": {"eventAttributionSource": "home-page"},
            }
            for n, item_id in enumerate(bought)
        ],
    )
    after = _item_ids(
        runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00007", numResults=10)
    )
    # What the user just bought is no longer recommended, and the list changed with it.
    assert not set(bought) & set(after)
    assert after != before
    stored = Interaction.objects.filter(project=shop.project, recommendation_id=rec_id)
    assert stored.count() == 3
    row = stored.select_related("item", "user").first()
    assert row.user.external_id == "u00007"
    assert row.event_type == "purchase" and row.event_value == 2.5
    assert row.session_id == "sess-u7"
    assert row.impression == "|".join(before[:5])
    assert abs(row.timestamp - time.time()) < 120


def test_an_anonymous_session_gets_recommendations_from_its_events(shop, runtime, pz_events_client):
    session = _new_id("anon")
    cold = _item_ids(
        runtime.get_recommendations(campaignArn=shop.campaign_arn, userId=session, numResults=10)
    )
    viewed = ["i00001", "i00002", "i00003"]
    pz_events_client.put_events(
        trackingId=pz_events.tracking_id(shop.project),
        sessionId=session,  # no userId: the session id stands for the user, as in Personalize
        eventList=[
            {"eventType": "view", "itemId": item_id, "sentAt": time.time()} for item_id in viewed
        ],
    )
    warm = _item_ids(
        runtime.get_recommendations(campaignArn=shop.campaign_arn, userId=session, numResults=10)
    )
    assert warm != cold
    assert not set(viewed) & set(warm)
    rows = Interaction.objects.filter(project=shop.project, user__external_id=session)
    assert sorted(rows.values_list("item__external_id", flat=True)) == viewed
    assert set(rows.values_list("session_id", flat=True)) == {session}


def test_put_items_adds_items_to_the_catalogue(shop, runtime, pz_events_client):
    new_id = _new_id("sneaker")
    pz_events_client.put_items(
        datasetArn=pz_events.dataset_arn(shop.project, "items"),
        items=[
            {
                "itemId": new_id,
                # camelCase keys and text values, as Personalize clients send them.
                "properties": '{"title": "Trail runner", "price": "59.90", "inStock": "false",'
                ' "category": "Shoes", "creationTimestamp": 1775000000, "colour": "red"}',
            },
            {"itemId": "i00001", "properties": '{"title": "Renamed blender", "price": 30}'},
        ],
    )
    item = Item.objects.get(project=shop.project, external_id=new_id)
    assert item.in_catalog
    assert item.creation_timestamp == 1775000000
    assert item.attributes["TITLE"] == "Trail runner"
    assert item.attributes["PRICE"] == pytest.approx(59.9)
    assert item.attributes["IN_STOCK"] is False
    assert item.attributes["COLOUR"] == "red"
    assert "CREATION_TIMESTAMP" not in item.attributes
    renamed = Item.objects.get(project=shop.project, external_id="i00001")
    assert renamed.attributes == {"TITLE": "Renamed blender", "PRICE": 30}
    # Serving sees the new item and its metadata within seconds, as after /api/v1/items (the
    # catalogue is re-read when the items changed, at most every 2 s: docs/serving.md).
    deadline = time.monotonic() + 8
    while True:
        ranked = runtime.get_personalized_ranking(
            campaignArn=shop.campaign_arn,
            userId="u00010",
            inputList=[new_id, "i00001"],
            metadataColumns={"ITEMS": ["TITLE", "PRICE"]},
        )["personalizedRanking"]
        metadata = {entry["itemId"]: entry.get("metadata") or {} for entry in ranked}
        if metadata[new_id].get("TITLE") or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert metadata[new_id]["TITLE"] == "Trail runner"
    assert metadata["i00001"]["TITLE"] == "Renamed blender"


def test_put_users_adds_users(shop, pz_events_client):
    new_id = _new_id("user")
    pz_events_client.put_users(
        datasetArn=pz_events.dataset_arn(shop.project, "users"),
        users=[
            {"userId": new_id, "properties": '{"membership": "premium", "country": "NL"}'},
            {"userId": _new_id("bare")},
        ],
    )
    user = EndUser.objects.get(project=shop.project, external_id=new_id)
    assert user.in_catalog
    assert user.attributes == {"MEMBERSHIP": "premium", "COUNTRY": "NL"}


def _event(item_id="i00005", **extra) -> dict:
    return {"eventType": "view", "itemId": item_id, "sentAt": time.time(), **extra}


def test_more_than_ten_events_are_refused(shop, pz_events_client):
    eleven = [_event() for _ in range(11)]
    tracking = pz_events.tracking_id(shop.project)
    # botocore checks minimum lengths only; the server enforces the model's maximum.
    session = _new_id("eleven")
    with pytest.raises(ClientError) as excinfo:
        pz_events_client.put_events(trackingId=tracking, sessionId=session, eventList=eleven)
    assert _code(excinfo) == "InvalidInputException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "1 to 10" in excinfo.value.response["Error"]["Message"]
    assert not Interaction.objects.filter(project=shop.project, session_id=session).exists()
    # An empty list the SDK refuses itself (the model's minimum), before sending anything.
    with pytest.raises(ParamValidationError, match="eventList"):
        pz_events_client.put_events(trackingId=tracking, sessionId=session, eventList=[])


def test_a_bad_event_refuses_the_whole_batch(shop, pz_events_client, unvalidated_client):
    tracking = pz_events.tracking_id(shop.project)
    session = _new_id("bad")
    with pytest.raises(pz_events_client.exceptions.InvalidInputException) as excinfo:
        pz_events_client.put_events(
            trackingId=tracking,
            sessionId=session,
            eventList=[_event(), _event(properties="{not json")],
        )
    message = excinfo.value.response["Error"]["Message"]
    assert "eventList[1].properties" in message and "JSON" in message
    # recsite's own validation of /api/v1/events applies too (negative values, long types).
    with pytest.raises(ClientError) as excinfo:
        pz_events_client.put_events(
            trackingId=tracking,
            sessionId=session,
            eventList=[_event(), _event(eventValue=-1.0)],
        )
    assert _code(excinfo) == "InvalidInputException"
    assert "eventList[1].eventValue" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as excinfo:
        unvalidated_client.put_events(
            trackingId=tracking, sessionId=session, eventList=[{"eventType": "view"}]
        )
    assert _code(excinfo) == "InvalidInputException"
    assert "sentAt" in excinfo.value.response["Error"]["Message"]
    assert not Interaction.objects.filter(project=shop.project, session_id=session).exists()


def test_unknown_or_foreign_tracking_ids_are_not_found(
    shop, make_personalize_shop, pz_events_client
):
    other = make_personalize_shop("other shop", train=False)
    for tracking in ("not-a-tracker", pz_events.tracking_id(other.project)):
        with pytest.raises(ClientError) as excinfo:
            pz_events_client.put_events(trackingId=tracking, sessionId="s1", eventList=[_event()])
        assert _code(excinfo) == "ResourceNotFoundException"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert pz_events.tracking_id(other.project) != pz_events.tracking_id(shop.project)
    # Another project's dataset ARN is not found either, and nothing is written there.
    with pytest.raises(pz_events_client.exceptions.ResourceNotFoundException):
        pz_events_client.put_items(
            datasetArn=pz_events.dataset_arn(other.project, "items"),
            items=[{"itemId": "intruder"}],
        )
    assert not Item.objects.filter(external_id="intruder").exists()


def test_dataset_arns_must_name_the_right_dataset(shop, pz_events_client):
    with pytest.raises(pz_events_client.exceptions.InvalidInputException) as excinfo:
        pz_events_client.put_users(
            datasetArn=pz_events.dataset_arn(shop.project, "items"), users=[{"userId": "x"}]
        )
    assert "users dataset" in excinfo.value.response["Error"]["Message"]
    with pytest.raises(pz_events_client.exceptions.ResourceNotFoundException):
        pz_events_client.put_items(
            datasetArn=pz_events.dataset_arn(shop.project, "nonsense"), items=[{"itemId": "x"}]
        )
    with pytest.raises(pz_events_client.exceptions.InvalidInputException) as excinfo:
        pz_events_client.put_items(
            datasetArn=pz_events.dataset_arn(shop.project, "items"),
            items=[{"itemId": "x", "properties": '["a list"]'}],
        )
    assert "items[0].properties must be a JSON object" in excinfo.value.response["Error"]["Message"]


def test_unsigned_or_wrongly_signed_writes_are_refused(shop, boto3_client):
    wrong = boto3_client("personalize-events", shop.access_key, "not-the-secret")
    with pytest.raises(ClientError) as excinfo:
        wrong.put_users(
            datasetArn=pz_events.dataset_arn(shop.project, "users"), users=[{"userId": "spy"}]
        )
    assert _code(excinfo) == "InvalidSignatureException"
    assert not EndUser.objects.filter(project=shop.project, external_id="spy").exists()


def test_clients_configured_by_environment_only(shop, personalize_server, monkeypatch):
    """The one-setting switch of docs/personalize.md: the SDK reads recsite's endpoint and the
    key pair from the environment; the app's code passes no endpoint_url."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_PERSONALIZE_EVENTS", personalize_server.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_PERSONALIZE_RUNTIME", personalize_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", shop.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", shop.secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # any region works
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    session = _new_id("env")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    app = boto3.session.Session()  # a new session reads the environment, as an app starts
    events_client = app.client("personalize-events")
    runtime_client = app.client("personalize-runtime")
    # Checked before any request, so nothing could ever go to AWS itself.
    assert events_client.meta.endpoint_url == personalize_server.endpoint
    assert runtime_client.meta.endpoint_url == personalize_server.endpoint
    events_client.put_events(
        trackingId=pz_events.tracking_id(shop.project),
        sessionId=session,
        eventList=[_event("i00009")],
    )
    assert Interaction.objects.filter(project=shop.project, session_id=session).count() == 1
    response = runtime_client.get_recommendations(
        campaignArn=shop.campaign_arn, userId=session, numResults=5
    )
    assert len(response["itemList"]) == 5
    assert "i00009" not in [entry["itemId"] for entry in response["itemList"]]
