"""Segments saved on users, used where marketers act on them: experiments that target a
segment, promotions and filters for a segment's users, and a users re-import that keeps the
saved segment field. Real database, real imports, a real clustering run.
"""

import json

import pandas as pd
import pytest
from django.urls import reverse

from datasets import imports
from datasets.models import EndUser
from datasets.services import create_api_key
from feeds import experiments
from feeds import services as feed_services
from feeds.experiments import VariantInput
from feeds.models import Experiment, Feed, FeedSlot, ServedRecommendation
from feeds.services import InvalidInput
from graphs import services as graph_services
from models_app import services

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 150, "n_items": 120, "n_interactions": 5_000, "seed": 21}


@pytest.fixture(autouse=True)
def fresh_caches(fresh_serving):
    """Each test starts and ends with serving's per-process caches empty."""


@pytest.fixture
def segmented(project, shop_files):
    """The demo shop imported (users with GENDER, COUNTRY, ...), a popularity model deployed
    as "default", two feeds, and a k-means run (k = 3) saved as the SEGMENT field."""
    for kind in ("users", "items", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=shop_files[kind])
        assert job.status == "succeeded", (kind, job.error)
    solution = services.create_solution(project=project, recipe="popularity-count")
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    services.create_campaign(project=project, name="default", version=run.version)
    for name in ("home", "home-b"):
        feed = Feed.objects.create(project=project, name=name)
        FeedSlot.objects.create(feed=feed, position=1, source="campaign:default", count=10)
    clustering = graph_services.run_clustering(
        graph_services.start_clustering_run(
            project=project,
            method="kmeans-behaviour",
            params={"k_min": 3, "k_max": 3},
            enqueue=False,
        )
    )
    assert clustering.status == "succeeded", clustering.error
    assert graph_services.save_segment_field(run=clustering, field="SEGMENT") > 0
    return project


def segments_of(project) -> dict[str, str]:
    return {
        external_id: attributes["SEGMENT"]
        for external_id, attributes in EndUser.objects.filter(project=project).values_list(
            "external_id", "attributes"
        )
        if "SEGMENT" in attributes
    }


def targeted(project, values=("0",), name="seg-test"):
    home, other = Feed.objects.filter(project=project).order_by("name")
    return experiments.create_experiment(
        project=project,
        name=name,
        variants=[VariantInput("control", home, 1, True), VariantInput("b", other, 1)],
        target_field="SEGMENT",
        target_values=list(values),
    )


def errors_of(call) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return " ".join(caught.value.errors.values())


# --------------------------------------------------------------------------- experiments


def test_an_experiment_targets_a_segment_and_refuses_bad_targets(segmented):
    project = segmented
    fields = {f.name: f.values for f in experiments.target_fields(project)}
    assert fields["SEGMENT"] == ["0", "1", "2"]
    assert "GENDER" in fields  # any single-valued categorical user field can be targeted

    assert "not a categorical user field" in errors_of(
        lambda: targeted_field(project, "NOPE", ["0"])
    )
    assert "Pick at least one value of SEGMENT" in errors_of(
        lambda: targeted_field(project, "SEGMENT", [])
    )
    message = errors_of(lambda: targeted_field(project, "SEGMENT", ["0", "7"]))
    assert "No user has SEGMENT = 7" in message and "0, 1, 2" in message
    assert "Pick the user field" in errors_of(lambda: targeted_field(project, "", ["0"]))
    assert not Experiment.objects.filter(project=project).exists()

    experiment = targeted(project, values=["2", "0", "0"])
    assert (experiment.target_field, experiment.target_values) == ("SEGMENT", ["0", "2"])
    assert experiments.target_description(experiment) == "users whose SEGMENT is 0 or 2"
    segments = segments_of(project)
    size = experiments.target_size(experiment)
    assert size["users"] == sum(v in ("0", "2") for v in segments.values()) > 0
    assert size["total"] == EndUser.objects.filter(project=project).count()

    # A draft may change its target; a started one may not (the results are about them).
    experiments.update_experiment(experiment=experiment, target_field="segment", target_values="1")
    experiment.refresh_from_db()
    assert (experiment.target_field, experiment.target_values) == ("SEGMENT", ["1"])
    experiments.start_experiment(experiment=experiment)
    assert "cannot change once the experiment has started" in errors_of(
        lambda: experiments.update_experiment(
            experiment=experiment, target_field="SEGMENT", target_values=["0"]
        )
    )


def targeted_field(project, field, values):
    home, other = Feed.objects.filter(project=project).order_by("name")
    return experiments.create_experiment(
        project=project,
        name="bad",
        variants=[VariantInput("control", home, 1, True), VariantInput("b", other, 1)],
        target_field=field,
        target_values=values,
    )


def test_only_the_target_is_enrolled_and_counted(client, segmented):
    project = segmented
    home = Feed.objects.get(project=project, name="home")
    experiment = targeted(project, values=["0"])
    experiments.start_experiment(experiment=experiment)
    segments = segments_of(project)
    inside = sorted(u for u, s in segments.items() if s == "0")
    outside = sorted(u for u, s in segments.items() if s != "0")
    assert len(inside) >= 10 and len(outside) >= 10

    resolved = {u: experiments.resolve_feed(project, "seg-test", u) for u in inside}
    assert {label for _, label in resolved.values()} == {"seg-test:control", "seg-test:b"}
    # Outside the target (or unknown, or without the field): the control feed, unlabelled.
    for user_id in [*outside, "someone-new"]:
        assert experiments.resolve_feed(project, "seg-test", user_id) == (home, None)
    # Assignment is the usual stable hash: the same answer again, and the same split as an
    # untargeted experiment with the same salt would give these users.
    assert resolved == {u: experiments.resolve_feed(project, "seg-test", u) for u in inside}
    for user_id, (_, label) in resolved.items():
        variant = experiments.assigned_variant(experiment, user_id)
        assert label == f"seg-test:{variant.name}"

    # Through the API: responses to users outside the target carry no variant and count for
    # nothing, even when their clicks come back with the recommendation id.
    _, key = create_api_key(project=project, name="tests")
    auth = {"authorization": f"Bearer {key}"}
    events = []
    for user_id in inside[:6] + outside[:6]:
        response = client.get(
            "/api/v1/feeds/seg-test", {"user_id": user_id, "page_size": 5}, headers=auth
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body.get("variant") is not None) == (user_id in inside)
        events.append(
            {
                "user_id": user_id,
                "item_id": body["items"][0]["item_id"],
                "event_type": "click",
                "recommendation_id": body["recommendation_id"],
            }
        )
    response = client.post(
        reverse("api-events"),
        json.dumps({"events": events}),
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code in (200, 201, 202), response.content
    results = experiments.experiment_results(experiment)
    rows = results["variants"]
    assert sum(r.users for r in rows) == 6
    assert sum(r.responses for r in rows) == 6
    assert sum(r.impressions for r in rows) == 30
    assert sum(r.clicks for r in rows) == 6
    assert ServedRecommendation.objects.filter(project=project, variant="").count() >= 6
    assert results["target"] == {
        "description": "users whose SEGMENT is 0",
        "users": len(inside),
        "total": EndUser.objects.filter(project=project).count(),
    }

    # Simulated traffic on existing users: only the target is served a variant.
    summary = experiments.simulate_traffic(
        experiment=experiment, users=0, user_ids=inside[6:16] + outside[6:16], seed=2
    )
    assert summary["not enrolled"]["users"] == 10
    assert sum(v["users"] for k, v in summary.items() if k != "not enrolled") == 10


def test_the_pages_create_a_targeted_experiment_and_say_who_is_in_it(client, user, segmented):
    project = segmented
    client.force_login(user)
    url = reverse("experiments", args=[project.slug])
    page = client.get(url).content.decode()
    assert 'name="target_field"' in page and 'name="target_value_SEGMENT"' in page
    home, other = Feed.objects.filter(project=project).order_by("name")
    form = {
        "name": "seg-test",
        "variant_name_0": "control",
        "variant_feed_0": home.pk,
        "variant_name_1": "b",
        "variant_feed_1": other.pk,
        "control": "0",
        "target_field": "SEGMENT",
    }
    response = client.post(url, form)  # no value ticked
    assert response.status_code == 400
    assert "Pick at least one value of SEGMENT" in response.content.decode()
    response = client.post(url, {**form, "target_value_SEGMENT": ["1", "2"]})
    assert response.status_code == 302
    experiment = Experiment.objects.get(project=project, name="seg-test")
    assert experiment.target_values == ["1", "2"]
    detail = client.get(response.url).content.decode()
    in_target = sum(v in ("1", "2") for v in segments_of(project).values())
    assert "Targets users whose SEGMENT is 1 or 2" in detail
    assert f"{in_target} of {EndUser.objects.filter(project=project).count()} users" in detail
    assert "only SEGMENT = 1, 2" in client.get(url).content.decode()


# --------------------------------------------------------------------------- re-import


def test_reimporting_users_keeps_the_saved_segment_field(segmented, shop_files, tmp_path):
    project = segmented
    before = segments_of(project)
    assert len(before) > 100
    users = pd.read_csv(shop_files["users"], dtype=str)
    # Incremental: a changed COUNTRY for everyone in the file; SEGMENT stays.
    changed = users.assign(COUNTRY="XX")
    path = tmp_path / "users-again.csv"
    changed.to_csv(path, index=False)
    job = imports.import_file(project=project, kind="users", path=path)
    assert job.status == "succeeded", job.error
    stored = dict(EndUser.objects.filter(project=project).values_list("external_id", "attributes"))
    assert segments_of(project) == before
    assert all(stored[u]["COUNTRY"] == "XX" for u in users.USER_ID)

    # Full import of a part of the users: those in the file keep their segment too.
    half = users.iloc[: len(users) // 2]
    half.to_csv(path, index=False)
    job = imports.import_file(project=project, kind="users", path=path, mode="full")
    assert job.status == "succeeded", job.error
    after = segments_of(project)
    assert {u: after.get(u) for u in half.USER_ID if u in before} == {
        u: before[u] for u in half.USER_ID if u in before
    }
    schema = {f.name: f for f in imports.get_schema(project, "users")}
    assert schema["SEGMENT"].type == "categorical"

    # A file with a SEGMENT column: the file's values win, like any attribute.
    users.assign(SEGMENT="from-file").to_csv(path, index=False)
    job = imports.import_file(project=project, kind="users", path=path)
    assert job.status == "succeeded", job.error
    assert set(segments_of(project).values()) == {"from-file"}

    # The filter on the field keeps working after a re-import.
    flt = feed_services.create_saved_filter(
        project=project,
        name="seg-filter",
        expression='EXCLUDE ItemID WHERE Items.CATEGORY = "Shoes" IF Users.SEGMENT = "from-file"',
    )
    assert flt.pk


def test_writing_a_user_through_the_api_keeps_its_saved_segment(client, segmented):
    project = segmented
    before = segments_of(project)
    user_id, segment = next(iter(before.items()))
    _, key = create_api_key(project=project, name="tests")
    response = client.post(
        "/api/v1/users",
        {"users": [{"user_id": user_id, "properties": {"COUNTRY": "XX"}}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 200, response.content
    stored = EndUser.objects.get(project=project, external_id=user_id).attributes
    assert stored["COUNTRY"] == "XX"
    assert stored["SEGMENT"] == segment
    # A record that sets the field itself wins, as in a users import.
    client.post(
        "/api/v1/users",
        {"users": [{"user_id": user_id, "properties": {"SEGMENT": "9"}}]},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert EndUser.objects.get(project=project, external_id=user_id).attributes["SEGMENT"] == "9"


# --------------------------------------------------------------------------- promotions


def promotion_for(project, expression, segment="0"):
    saved = feed_services.create_saved_filter(
        project=project, name="segment-deal", expression=expression
    )
    return feed_services.create_promotion(
        project=project,
        name="Segment deal",
        saved_filter=saved,
        filter_values={"CATS": ["Shoes", "Running", "Sports", "Audio", "Books"], "SEG": [segment]},
        share=0.2,
    )


SEGMENT_PROMOTION = "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATS) IF Users.SEGMENT IN ($SEG)"


def test_a_promotion_for_one_segment_reaches_only_its_users(client, segmented):
    """docs/promotions.md: the guarded INCLUDE picks the segment's promoted items; for
    everyone else it is skipped, and a promotion whose INCLUDE statements are all skipped
    promotes nothing (a plain filter would let every item through)."""
    project = segmented
    promotion_for(project, SEGMENT_PROMOTION)
    segments = segments_of(project)
    inside = [u for u, s in segments.items() if s == "0"][:5]
    outside = [u for u, s in segments.items() if s != "0"][:5]
    _, key = create_api_key(project=project, name="tests")
    auth = {"authorization": f"Bearer {key}"}

    def promoted(user_id, feed=False):
        if feed:
            response = client.get(
                "/api/v1/feeds/home", {"user_id": user_id, "page_size": 10}, headers=auth
            )
        else:
            response = client.get(
                "/api/v1/recommendations", {"user_id": user_id, "num_results": 10}, headers=auth
            )
        assert response.status_code == 200, response.content
        return [i for i in response.json()["items"] if i["source"].startswith("promotion")]

    for user_id in inside:
        for feed in (False, True):
            items = promoted(user_id, feed)
            # 20% of 10 places = 2. (The recommendations endpoint may fill fewer: see the
            # report; its candidates can all be placed by the model first.)
            assert 1 <= len(items) <= 2, (user_id, feed)
            if feed:
                assert len(items) == 2, user_id
            assert {i["reason"] for i in items} == {"promoted: Segment deal"}
    for user_id in [*outside, "someone-new"]:
        assert promoted(user_id) == [] and promoted(user_id, feed=True) == []


def test_a_feed_filter_on_the_segment_applies_to_its_users_only(client, segmented, shop_files):
    """A request filter guarded by the segment: its users lose the excluded categories, the
    other users' feeds are unchanged."""
    from feeds import feeds as feed_service

    project = segmented
    saved = feed_services.create_saved_filter(
        project=project,
        name="no-audio-for-0",
        expression='EXCLUDE ItemID WHERE Items.CATEGORY IN ("Audio", "Electronics") '
        'IF Users.SEGMENT = "0"',
    )
    home = Feed.objects.get(project=project, name="home")
    feed_service.update_feed(feed=home, saved_filter=saved, exclude_seen=False)
    items = pd.read_csv(shop_files["items"], dtype=str)
    blocked = {
        i
        for i, c in zip(items.ITEM_ID, items.CATEGORY.fillna(""), strict=True)
        if {"Audio", "Electronics"} & set(c.split("|"))
    }
    segments = segments_of(project)
    _, key = create_api_key(project=project, name="tests")

    def shown(user_id):
        response = client.get(
            "/api/v1/feeds/home",
            {"user_id": user_id, "page_size": 40},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.content
        return {i["item_id"] for i in response.json()["items"]}

    for user_id in [u for u, s in segments.items() if s == "0"][:3]:
        assert not shown(user_id) & blocked
    for user_id in [u for u, s in segments.items() if s != "0"][:3]:
        assert shown(user_id) & blocked  # popular Audio/Electronics items still shown
