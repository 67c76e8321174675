"""GetRecommendations and GetPersonalizedRanking through boto3's personalize-runtime client
against a live server: the answers are the campaign's, filters and promotions apply, and
every mistake is an AWS error boto3 turns into its exception classes."""

from __future__ import annotations

import csv
import json
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from datasets.services import revoke_api_key
from feeds.models import Promotion, SavedFilter

CATEGORY_FILTER = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS)"


@pytest.fixture(scope="module")
def shop(personalize_shop, django_db_blocker):
    """The main shop plus a saved category filter."""
    with django_db_blocker.unblock():
        SavedFilter.objects.create(
            project=personalize_shop.project, name="by-category", expression=CATEGORY_FILTER
        )
    return personalize_shop


@pytest.fixture(scope="module")
def truth(shop):
    return json.loads(open(shop.files["ground_truth"]).read())


@pytest.fixture(scope="module")
def categories(shop) -> dict[str, str]:
    with open(shop.files["items"], newline="") as f:
        return {row["ITEM_ID"]: row["CATEGORY"] for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def other_shop(make_personalize_shop):
    """Another project, with a campaign and a filter of the same names as the main shop's."""
    return make_personalize_shop("other shop")


def code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def api_v1(server, shop, path: str, params: dict) -> dict:
    """The same question through recsite's own API (Bearer key)."""
    url = f"{server.url}/api/v1/{path}?{urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {shop.plaintext}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def segment_of(truth, name: str) -> dict:
    return next(s for s in truth["segments"] if s["name"] == name)


# --------------------------------------------------------------------------- answers


def test_recommendations_are_the_campaign_s_for_a_known_user(
    shop, runtime, truth, categories, personalize_server
):
    athletes = segment_of(truth, "athletes")
    favoured = set(athletes["categories"])
    shares = []
    for user in athletes["users"][:8]:
        answer = runtime.get_recommendations(
            campaignArn=shop.campaign_arn, userId=user, numResults=10
        )
        items = answer["itemList"]
        assert len(items) == 10
        assert answer["recommendationId"]
        assert all(isinstance(i["score"], float) and i["reason"] for i in items)
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        shares.append(sum(categories[i["itemId"]] in favoured for i in items) / len(items))
        # Exactly what recsite's own API answers for the same user.
        own = api_v1(
            personalize_server, shop, "recommendations", {"user_id": user, "num_results": 10}
        )
        assert [i["itemId"] for i in items] == [i["item_id"] for i in own["items"]]
    base = sum(c in favoured for c in categories.values()) / len(categories)
    assert sum(shares) / len(shares) > base + 0.3, (shares, base)


def test_recommender_arn_names_a_campaign_too(shop, runtime):
    by_campaign = runtime.get_recommendations(
        campaignArn=shop.campaign_arn, userId="u00003", numResults=5
    )
    by_recommender = runtime.get_recommendations(
        recommenderArn=shop.arn("recommender", "default"), userId="u00003", numResults=5
    )
    assert [i["itemId"] for i in by_campaign["itemList"]] == [
        i["itemId"] for i in by_recommender["itemList"]
    ]


def test_default_number_of_results_is_25(shop, runtime):
    answer = runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00010")
    assert len(answer["itemList"]) == 25


def test_related_items_by_item_id(shop, runtime, categories, personalize_server):
    anchor = "i00001"
    answer = runtime.get_recommendations(
        campaignArn=shop.campaign_arn, itemId=anchor, numResults=10
    )
    ids = [i["itemId"] for i in answer["itemList"]]
    assert len(ids) == 10 and anchor not in ids
    assert all(i["reason"][0].startswith("similar to") for i in answer["itemList"])
    own = api_v1(personalize_server, shop, f"items/{quote(anchor)}/related", {"num_results": 10})
    assert ids == [i["item_id"] for i in own["items"]]
    same = sum(categories[i] == categories[anchor] for i in ids)
    assert same >= 4, [categories[i] for i in ids]


def test_filter_arn_with_filter_values(shop, runtime, categories):
    answer = runtime.get_recommendations(
        campaignArn=shop.campaign_arn,
        userId="u00001",
        numResults=8,
        filterArn=shop.arn("filter", "by-category"),
        filterValues={"CATS": '"Kitchen","Toys"'},
    )
    found = {categories[i["itemId"]] for i in answer["itemList"]}
    assert len(answer["itemList"]) == 8
    assert found <= {"Kitchen", "Toys"}, found


def test_a_request_promotion_takes_its_share_and_names_itself(shop, runtime, truth, categories):
    user = segment_of(truth, "athletes")["users"][0]
    plain = runtime.get_recommendations(campaignArn=shop.campaign_arn, userId=user, numResults=10)
    shown = {categories[i["itemId"]] for i in plain["itemList"]}
    pushed = sorted(set(categories.values()) - shown)[0]  # a category the user would not see
    answer = runtime.get_recommendations(
        campaignArn=shop.campaign_arn,
        userId=user,
        numResults=10,
        promotions=[
            {
                "name": "category-week",
                "percentPromotedItems": 20,
                "filterArn": shop.arn("filter", "by-category"),
                "filterValues": {"CATS": f'"{pushed}"'},
            }
        ],
    )
    items = answer["itemList"]
    promoted = [(n, i) for n, i in enumerate(items, 1) if "promotionName" in i]
    assert [n for n, _ in promoted] == [5, 10]  # 20 % of 10 positions, spread evenly
    assert all(i["promotionName"] == "category-week" for _, i in promoted)
    assert all(categories[i["itemId"]] == pushed for _, i in promoted)
    # The other positions keep the campaign's order.
    rest = [i["itemId"] for i in items if "promotionName" not in i]
    assert rest == [i["itemId"] for i in plain["itemList"]][:8]


def test_saved_promotions_carry_their_name(shop, runtime, categories, django_db_blocker):
    saved = SavedFilter.objects.get(project=shop.project, name="by-category")
    promotion = Promotion.objects.create(
        project=shop.project,
        name="Toy fair",
        filter=saved,
        filter_values={"CATS": ["Toys"]},
        positions=[1],
    )
    try:
        answer = runtime.get_recommendations(
            campaignArn=shop.campaign_arn, userId="u00002", numResults=5
        )
    finally:
        promotion.delete()
    first = answer["itemList"][0]
    assert first["promotionName"] == "Toy fair"
    assert categories[first["itemId"]] == "Toys"
    assert all("promotionName" not in i for i in answer["itemList"][1:])


def test_promotions_sharing_a_reason_keep_their_own_names(shop, runtime, categories):
    saved = SavedFilter.objects.get(project=shop.project, name="by-category")
    toys, other = "Toys", sorted(set(categories.values()) - {"Toys"})[0]
    promotions = [
        Promotion.objects.create(
            project=shop.project,
            name=name,
            filter=saved,
            filter_values={"CATS": [category]},
            positions=[position],
            reason="on sale",
        )
        for name, category, position in (("Toy fair", toys, 1), ("Spring sale", other, 2))
    ]
    try:
        answer = runtime.get_recommendations(
            campaignArn=shop.campaign_arn,
            userId="u00002",
            numResults=5,
            promotions=[
                {
                    "name": "request-push",
                    "percentPromotedItems": 20,  # position 5 of 5
                    "filterArn": shop.arn("filter", "by-category"),
                    "filterValues": {"CATS": f'"{toys}"'},
                }
            ],
        )
    finally:
        for promotion in promotions:
            promotion.delete()
    items = answer["itemList"]
    assert [i.get("promotionName") for i in items] == [
        "Toy fair",
        "Spring sale",
        None,
        None,
        "request-push",
    ]
    assert [categories[items[n]["itemId"]] for n in (0, 1, 4)] == [toys, other, toys]
    assert items[0]["reason"] == items[1]["reason"] == ["on sale"]


def test_metadata_columns_come_from_the_catalogue(shop, runtime, categories):
    answer = runtime.get_recommendations(
        campaignArn=shop.campaign_arn,
        userId="u00004",
        numResults=5,
        metadataColumns={"ITEMS": ["CATEGORY", "price"]},
    )
    for item in answer["itemList"]:
        assert item["metadata"]["CATEGORY"] == categories[item["itemId"]]
        assert float(item["metadata"]["PRICE"]) > 0
    with pytest.raises(runtime.exceptions.InvalidInputException) as info:
        runtime.get_recommendations(
            campaignArn=shop.campaign_arn,
            userId="u00004",
            metadataColumns={"ITEMS": ["COLOUR"]},
        )
    assert "COLOUR" in str(info.value) and "CATEGORY" in str(info.value)


def test_personalized_ranking(shop, runtime, truth, categories):
    athletes = segment_of(truth, "athletes")
    favoured = set(athletes["categories"])
    liked = [i for i, c in categories.items() if c in favoured][:6]
    other = [i for i, c in categories.items() if c not in favoured][:6]
    user = athletes["users"][1]
    answer = runtime.get_personalized_ranking(
        campaignArn=shop.campaign_arn,
        userId=user,
        inputList=[*other, "no-such-item", *liked],
    )
    ranked = [i["itemId"] for i in answer["personalizedRanking"]]
    assert answer["recommendationId"]
    assert sorted(ranked) == sorted([*other, "no-such-item", *liked])
    assert ranked[-1] == "no-such-item"  # unknown to the model: last, without a score
    assert "score" not in answer["personalizedRanking"][-1]
    top = ranked[:6]
    assert sum(i in liked for i in top) >= 4, [categories.get(i) for i in ranked]
    # A filter removes what it excludes.
    filtered = runtime.get_personalized_ranking(
        campaignArn=shop.campaign_arn,
        userId=user,
        inputList=[*other, *liked],
        filterArn=shop.arn("filter", "by-category"),
        filterValues={"CATS": ",".join(f'"{c}"' for c in sorted(favoured))},
    )
    assert sorted(i["itemId"] for i in filtered["personalizedRanking"]) == sorted(liked)


def test_throttling_is_an_error_boto3_knows(shop, runtime, settings):
    settings.API_THROTTLE_RATE = "2/min"
    calls = Counter()
    with pytest.raises(ClientError) as info:
        for _ in range(3):
            runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00005")
            calls["ok"] += 1
    assert calls["ok"] == 2
    assert code(info.value) == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


# --------------------------------------------------------------------------- resolution errors


def test_unknown_campaign_arn_is_resource_not_found(shop, runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as info:
        runtime.get_recommendations(
            campaignArn=shop.arn("campaign", "no-such-campaign"), userId="u00001"
        )
    assert "no-such-campaign" in str(info.value)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_another_project_s_arns_are_not_found(shop, other_shop, runtime):
    """Its campaign and filter exist (with the same names as ours), but not for this key: the
    answer is the one for an ARN that exists nowhere."""
    answers = {}
    for label, arn in (
        ("theirs", other_shop.campaign_arn),
        ("nowhere", shop.campaign_arn.replace(shop.project.slug, "zz-no-such-project")),
    ):
        with pytest.raises(runtime.exceptions.ResourceNotFoundException) as info:
            runtime.get_recommendations(campaignArn=arn, userId="u00001")
        answers[label] = info.value.response["Error"]["Message"].replace(arn, "<arn>")
    assert answers["theirs"] == answers["nowhere"]
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(
            campaignArn=shop.campaign_arn,
            userId="u00001",
            filterArn=other_shop.arn("filter", "by-category"),
        )
    # The other project's own key does reach its campaign.
    theirs = boto3.client(
        "personalize-runtime",
        endpoint_url=runtime.meta.endpoint_url,
        region_name="local",
        aws_access_key_id=other_shop.access_key,
        aws_secret_access_key=other_shop.secret,
    )
    assert theirs.get_recommendations(campaignArn=other_shop.campaign_arn, userId="u00001")[
        "itemList"
    ]


def test_unknown_filter_arn_is_resource_not_found(shop, runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(
            campaignArn=shop.campaign_arn,
            userId="u00001",
            filterArn=shop.arn("filter", "no-such-filter"),
        )


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"numResults": 0}, "numResults"),
        ({"numResults": 501}, "numResults"),
        ({"numResults": 51, "metadataColumns": {"ITEMS": ["CATEGORY"]}}, "50"),
        ({"userId": None}, "userId"),
        ({"campaignArn": "arn:aws:personalize:local:x:campaign"}, "not a valid ARN"),
        ({"campaignArn": "FILTER"}, "filter ARN"),
        ({"filterValues": {"CATS": '"Toys"'}}, "without a filterArn"),
        ({"context": {"DEVICE": "x" * 1001}}, None),
        ({"promotions": [{"name": "p", "percentPromotedItems": 20}]}, "filterArn"),
        ({"promotions": [{"name": "p", "percentPromotedItems": 101, "filterArn": "F"}]}, "100"),
        ({"filterArn": "FILTER", "filterValues": {"NOPE": '"x"'}}, "NOPE"),
    ],
)
def test_invalid_input(shop, runtime, params, words):
    request = {"campaignArn": shop.campaign_arn, "userId": "u00001", **params}
    request = {k: v for k, v in request.items() if v is not None}
    filter_arn = shop.arn("filter", "by-category")
    if request.get("campaignArn") == "FILTER":
        request["campaignArn"] = filter_arn
    if request.get("filterArn") == "FILTER":
        request["filterArn"] = filter_arn
    for promo in request.get("promotions", []):
        if promo.get("filterArn") == "F":
            promo["filterArn"] = filter_arn
    try:
        runtime.get_recommendations(**request)
    except runtime.exceptions.InvalidInputException as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert words is None or words in exc.response["Error"]["Message"], exc
    else:
        pytest.fail(f"{params} was accepted")


# --------------------------------------------------------------------------- authentication


def test_wrong_secret_is_an_invalid_signature(shop, boto3_client):
    client = boto3_client("personalize-runtime", shop.access_key, shop.secret[:-2] + "xx")
    with pytest.raises(ClientError) as info:
        client.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")
    assert code(info.value) == "InvalidSignatureException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature" in info.value.response["Error"]["Message"].lower()


def test_unknown_access_key_is_unrecognized(shop, boto3_client):
    client = boto3_client("personalize-runtime", "RSKZZZZZZZZ", shop.secret)
    with pytest.raises(ClientError) as info:
        client.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")
    assert code(info.value) == "UnrecognizedClientException"


def test_unsigned_requests_are_refused(shop, personalize_server):
    client = boto3.client(
        "personalize-runtime",
        endpoint_url=personalize_server.endpoint,
        region_name="local",
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as info:
        client.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")
    assert code(info.value) == "MissingAuthenticationTokenException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_a_skewed_clock_is_refused(shop, runtime, monkeypatch, skew):
    import botocore.auth

    monkeypatch.setattr(
        botocore.auth, "get_current_datetime", lambda: datetime.now(UTC).replace(tzinfo=None) + skew
    )
    with pytest.raises(ClientError) as info:
        runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")
    assert code(info.value) == "InvalidSignatureException"
    message = info.value.response["Error"]["Message"]
    assert ("expired" if skew < timedelta(0) else "not yet current") in message


def test_a_slightly_skewed_clock_is_fine(shop, runtime, monkeypatch):
    import botocore.auth

    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda: datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=4),
    )
    assert runtime.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")["itemList"]


def test_a_revoked_key_is_unrecognized(make_personalize_shop, boto3_client):
    shop = make_personalize_shop("revoked", train=False)
    revoke_api_key(api_key=shop.api_key)
    client = boto3_client("personalize-runtime", shop.access_key, shop.secret)
    with pytest.raises(ClientError) as info:
        client.get_recommendations(campaignArn=shop.arn("campaign", "default"), userId="u1")
    assert code(info.value) == "UnrecognizedClientException"
    assert "revoked" in info.value.response["Error"]["Message"]


def test_rotating_secret_key_keeps_keys_working_while_it_is_a_fallback(
    shop, boto3_client, settings
):
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    client = boto3_client("personalize-runtime", shop.access_key, shop.secret)
    with pytest.raises(ClientError) as info:
        client.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")
    assert code(info.value) == "InvalidSignatureException"
    settings.SECRET_KEY_FALLBACKS = [old]
    assert client.get_recommendations(campaignArn=shop.campaign_arn, userId="u00001")["itemList"]


def test_a_recsite_bearer_key_is_not_a_signature(shop, personalize_server):
    request = urllib.request.Request(
        f"{personalize_server.endpoint}/recommendations",
        data=json.dumps({"campaignArn": shop.campaign_arn, "userId": "u00001"}).encode(),
        headers={"Authorization": f"Bearer {shop.plaintext}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 403
    assert info.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(info.value.read())["__type"] == "MissingAuthenticationTokenException"


def test_the_key_page_shows_the_aws_pair_once_and_it_signs(shop, boto3_client, client):
    """Creating a key on the API keys page shows its access key id and secret with it; an SDK
    signing with that pair gets the project's recommendations."""
    import re

    from django.contrib.auth import get_user_model

    from datasets.services import add_member

    editor = get_user_model().objects.create_user(username="pz-editor", password="x-pw-123")
    add_member(project=shop.project, user=editor)
    try:
        client.force_login(editor)
        url = f"/p/{shop.project.slug}/api-keys/"
        page = client.post(url, {"name": "mobile app"}).content.decode()
        key_id = re.search(r'id="aws-access-key-id">([^<]+)<', page).group(1)
        secret = re.search(r'id="aws-secret-access-key" class="secret">([^<]+)<', page).group(1)
        assert key_id.startswith("RSK") and len(secret) >= 40
        sdk = boto3_client("personalize-runtime", key_id, secret)
        answer = sdk.get_recommendations(campaignArn=shop.campaign_arn, userId="u00007")
        assert len(answer["itemList"]) == 25
        assert secret not in client.get(url).content.decode()  # shown only once
    finally:
        editor.delete()


def test_unknown_item_and_undeployed_campaign_are_not_found(shop, runtime, django_db_blocker):
    from models_app import services

    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as info:
        runtime.get_recommendations(campaignArn=shop.campaign_arn, itemId="no-such-item")
    assert "no-such-item" in str(info.value)
    services.create_campaign(project=shop.project, name="empty")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as info:
        runtime.get_recommendations(campaignArn=shop.arn("campaign", "empty"), userId="u00001")
    assert "empty" in str(info.value)


def test_arns_name_the_project_by_its_slug_and_resolve_only_in_it(shop, other_shop):
    from feeds.personalize import arns
    from feeds.personalize.errors import InvalidInput, ResourceNotFound

    arn = arns.arn_for("dataset", shop.project, "interactions/2024")
    assert arn == f"arn:aws:personalize:local:{shop.project.slug}:dataset/interactions/2024"
    parsed = arns.resolve_arn(arn, shop.project, ("dataset", "filter"))
    assert (parsed.kind, parsed.name) == ("dataset", "interactions/2024")
    # Any partition and region resolve; another project's slug does not.
    assert arns.resolve_arn(arn.replace(":local:", ":eu-west-1:"), shop.project, "dataset")
    with pytest.raises(ResourceNotFound):
        arns.resolve_arn(arn, other_shop.project, "dataset")
    with pytest.raises(InvalidInput, match="campaign"):
        arns.resolve_arn(arn, shop.project, "campaign")
    for bad in ("", "arn:aws:s3:::bucket", f"arn:aws:personalize:local:{shop.project.slug}:x/y"):
        with pytest.raises(InvalidInput):
            arns.parse_arn(bad)
    with pytest.raises(ValueError):
        arns.arn_for("bucket", shop.project, "x")
