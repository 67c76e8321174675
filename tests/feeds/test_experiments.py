"""Experiments against the real database: validation, stable assignment through start/pause/
resume/stop, resolve_feed, results from served rows and events posted to /api/v1/events,
planted lifts found (and A/A runs not), the management command and the pages.
"""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from datasets import imports
from datasets.models import Membership
from datasets.services import create_api_key, create_project
from feeds import experiments
from feeds.experiments import FeedNotFound, VariantInput
from feeds.models import Experiment, Feed, FeedSlot
from feeds.services import InvalidInput
from models_app import services

pytestmark = pytest.mark.django_db

SHOP_SIZE = {"n_users": 200, "n_items": 150, "n_interactions": 6_000, "seed": 11}


@pytest.fixture(autouse=True)
def fresh_caches(fresh_serving):
    """Each test starts and ends with serving's per-process caches empty."""


def make_feed(project, name, campaign="default"):
    feed = Feed.objects.create(project=project, name=name)
    FeedSlot.objects.create(feed=feed, position=1, source=f"campaign:{campaign}", count=10)
    return feed


@pytest.fixture
def feeds(project):
    return make_feed(project, "home"), make_feed(project, "home-trending")


@pytest.fixture
def served_shop(project, shop_files):
    """The project with the demo shop imported and a popularity model deployed as "default"."""
    for kind in ("items", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=shop_files[kind])
        assert job.status == "succeeded", job.error
    solution = services.create_solution(project=project, recipe="popularity-count")
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    services.create_campaign(project=project, name="default", version=run.version)
    return project


def ab(project, feeds, name="home-test", weights=(1, 1), **extra):
    control, other = feeds
    return experiments.create_experiment(
        project=project,
        name=name,
        variants=[
            VariantInput("control", control, weights[0], True),
            VariantInput("b", other, weights[1], False),
        ],
        **extra,
    )


# --------------------------------------------------------------------------- validation


def errors_of(call) -> str:
    with pytest.raises(InvalidInput) as caught:
        call()
    return " ".join(caught.value.errors.values())


def test_create_validates_the_variants_with_messages(project, feeds, make_user):
    home, trending = feeds
    create = experiments.create_experiment

    def rows(*variants):
        return lambda: create(project=project, name="t", variants=list(variants))

    assert "at least two variants" in errors_of(rows(VariantInput("control", home, 1, True)))
    message = errors_of(
        rows(VariantInput("control", home, 1, True), VariantInput("b", trending, 1, True))
    )
    assert "exactly one variant as the control" in message and "2 are marked" in message
    assert "0 are marked" in errors_of(
        rows(VariantInput("control", home, 1), VariantInput("b", trending, 1))
    )
    message = errors_of(
        rows(VariantInput("control", home, 0, True), VariantInput("b", trending, 1))
    )
    assert "Variant 1 (“control”): the weight must be from 1 to 1000" in message
    assert "whole number" in errors_of(
        rows(VariantInput("control", home, "two", True), VariantInput("b", trending, 1))
    )
    assert "two variants are named “b”" in errors_of(
        rows(VariantInput("b", home, 1, True), VariantInput("b", trending, 1))
    )
    elsewhere = make_feed(create_project(name="Other", owner=make_user("olga")), "home")
    message = errors_of(
        rows(VariantInput("control", home, 1, True), VariantInput("b", elsewhere, 1))
    )
    assert "Variant 2 (“b”) has no feed of this project; pick one of home, home-trending" in message
    assert "is the name of a feed" in errors_of(
        lambda: create(
            project=project,
            name="home",
            variants=[VariantInput("control", home, 1, True), VariantInput("b", trending)],
        )
    )
    assert "not a valid name" in errors_of(
        lambda: create(
            project=project,
            name="Home Test!",
            variants=[VariantInput("control", home, 1, True), VariantInput("b", trending)],
        )
    )
    long_name = "x" * 50
    assert "names together are limited to 59 characters" in errors_of(
        lambda: create(
            project=project,
            name=long_name,
            variants=[VariantInput("control", home, 1, True), VariantInput("b" * 12, trending)],
        )
    )
    ab(project, feeds)
    assert "already has an experiment named “home-test”" in errors_of(lambda: ab(project, feeds))
    assert Experiment.objects.count() == 1


def test_status_changes_and_their_refusals(project, feeds):
    experiment = ab(project, feeds)
    assert experiment.status == "draft" and experiment.salt
    assert "cannot be paused" in errors_of(
        lambda: experiments.pause_experiment(experiment=experiment)
    )
    experiment = experiments.start_experiment(experiment=experiment)
    started = experiment.started_at
    assert experiment.status == "running" and started is not None
    experiment = experiments.pause_experiment(experiment=experiment)
    experiment = experiments.start_experiment(experiment=experiment)
    assert experiment.status == "running" and experiment.started_at == started
    experiment = experiments.stop_experiment(experiment=experiment)
    assert experiment.status == "stopped" and experiment.stopped_at is not None
    assert "a stopped experiment is final" in errors_of(
        lambda: experiments.start_experiment(experiment=experiment)
    )


def test_editing_variants_only_in_draft_and_weights_later(project, feeds):
    home, trending = feeds
    experiment = ab(project, feeds)
    experiments.update_experiment(
        experiment=experiment,
        variants=[
            VariantInput("control", home, 1, True),
            VariantInput("b", trending, 1),
            VariantInput("c", trending, 2),
        ],
    )
    assert [(v.name, v.weight) for v in experiment.variants.all()] == [
        ("control", 1),
        ("b", 1),
        ("c", 2),
    ]
    experiments.start_experiment(experiment=experiment)
    assert "cannot change once the experiment has started" in errors_of(
        lambda: experiments.update_experiment(
            experiment=experiment,
            variants=[VariantInput("control", home, 1, True), VariantInput("b", trending, 1)],
        )
    )
    experiments.update_experiment(experiment=experiment, weights={"b": "3"})
    assert experiment.variants.get(name="b").weight == 3
    assert "from 1 to 1000" in errors_of(
        lambda: experiments.update_experiment(experiment=experiment, weights={"b": 0})
    )
    assert "No variant “zz”" in errors_of(
        lambda: experiments.update_experiment(experiment=experiment, weights={"zz": 1})
    )


# --------------------------------------------------------------------------- resolve_feed


def test_resolve_feed_follows_the_status_and_keeps_assignment_stable(project, feeds):
    home, trending = feeds
    experiment = ab(project, feeds)
    users = [f"user-{i}" for i in range(200)]
    # Draft: everybody gets the control feed, nothing is labelled.
    assert {experiments.resolve_feed(project, "home-test", u) for u in users} == {(home, None)}
    experiments.start_experiment(experiment=experiment)
    running = {u: experiments.resolve_feed(project, "home-test", u) for u in users}
    assert {label for _, label in running.values()} == {"home-test:control", "home-test:b"}
    for feed, label in running.values():
        assert feed == (home if label == "home-test:control" else trending)
    assert running == {u: experiments.resolve_feed(project, "home-test", u) for u in users}
    experiments.pause_experiment(experiment=experiment)
    assert {experiments.resolve_feed(project, "home-test", u) for u in users} == {(home, None)}
    experiments.start_experiment(experiment=experiment)
    assert running == {u: experiments.resolve_feed(project, "home-test", u) for u in users}
    # No user id: the control, unlabelled (it cannot be attributed).
    assert experiments.resolve_feed(project, "home-test", None) == (home, None)
    experiments.stop_experiment(experiment=experiment)
    assert {experiments.resolve_feed(project, "home-test", u) for u in users} == {(home, None)}
    # A feed's own name serves that feed.
    assert experiments.resolve_feed(project, "home-trending", "user-1") == (trending, None)
    with pytest.raises(FeedNotFound) as caught:
        experiments.resolve_feed(project, "nope", "user-1")
    assert "No feed or experiment named “nope”" in caught.value.message
    assert "feeds: home, home-trending" in caught.value.message


# --------------------------------------------------------------------------- results


def post_events(client, key, events):
    response = client.post(
        reverse("api-events"),
        json.dumps({"events": events}),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code in (200, 201, 202), response.content
    return response.json()


class Served:
    def __init__(self, body):
        self.recommendation_id = body["recommendation_id"]
        self.items = body["items"]
        self.variant = body.get("variant")


def serve(client, key, name, user_id, page_size=10):
    """A request to the feed endpoint, as an app makes it."""
    response = client.get(
        f"/api/v1/feeds/{name}",
        {"user_id": user_id, "page_size": page_size},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    served = Served(response.json())
    return served, served.variant


def test_results_count_impressions_clicks_conversions_and_users(client, served_shop, feeds):
    project = served_shop
    experiment = ab(project, feeds)
    experiments.start_experiment(experiment=experiment)
    other = ab(project, feeds, name="other-test")
    experiments.start_experiment(experiment=other)
    _, key = create_api_key(project=project, name="tests")
    by_label = {}
    for i in range(40):
        served, label = serve(client, key, "home-test", f"shopper-{i}", page_size=5)
        by_label.setdefault(label, []).append(served)
    assert set(by_label) == {"home-test:control", "home-test:b"}
    control_served, b_served = by_label["home-test:control"], by_label["home-test:b"]
    # A second response for one user: two responses, one user.
    again, label = serve(client, key, "home-test", "shopper-0", page_size=5)
    by_label[label].append(again)
    events = []
    first = control_served[0]
    shown = [item["item_id"] for item in first.items]
    events += [
        {"user_id": "shopper-x", "item_id": shown[0], "event_type": "click"},
        {"user_id": "shopper-x", "item_id": shown[1], "event_type": "click"},
        {"user_id": "shopper-x", "item_id": shown[1], "event_type": "click"},  # counted once
        {"user_id": "shopper-x", "item_id": shown[1], "event_type": "purchase"},
        {"user_id": "shopper-x", "item_id": shown[2], "event_type": "view"},  # neither
    ]
    for event in events:
        event["recommendation_id"] = first.recommendation_id
    b_first = b_served[0]
    events.append(
        {
            "user_id": "shopper-y",
            "item_id": b_first.items[0]["item_id"],
            "event_type": "click",
            "recommendation_id": b_first.recommendation_id,
        }
    )
    not_shown = next(
        i for i in ("item-1", "item-2", "item-3") if i not in {x["item_id"] for x in b_first.items}
    )
    events.append(  # an item the response did not show: not attributed
        {
            "user_id": "shopper-y",
            "item_id": not_shown,
            "event_type": "click",
            "recommendation_id": b_first.recommendation_id,
        }
    )
    # A response of the other experiment, and its click: never mixed into home-test.
    other_served, other_label = serve(client, key, "other-test", "shopper-z", page_size=5)
    events.append(
        {
            "user_id": "shopper-z",
            "item_id": other_served.items[0]["item_id"],
            "event_type": "click",
            "recommendation_id": other_served.recommendation_id,
        }
    )
    post_events(client, key, events)

    results = experiments.experiment_results(experiment)
    rows = {row.variant.name: row for row in results["variants"]}
    control, b = rows["control"], rows["b"]
    assert control.responses + b.responses == 41
    n_control = len(by_label["home-test:control"])
    assert control.responses == n_control
    assert control.impressions == sum(len(s.items) for s in by_label["home-test:control"])
    assert b.impressions == sum(len(s.items) for s in by_label["home-test:b"])
    assert control.users + b.users == 40
    assert (control.clicks, control.conversions) == (2, 1)
    assert (b.clicks, b.conversions) == (1, 0)
    assert control.stats.ctr.rate == pytest.approx(2 / control.impressions)
    # 40 users: far too few to judge.
    assert all(not c.enough_data for c in results["analysis"]["comparisons"])
    other_rows = {r.variant.name: r for r in experiments.experiment_results(other)["variants"]}
    assert sum(r.clicks for r in other_rows.values()) == 1
    assert sum(r.responses for r in other_rows.values()) == 1


def fixed_salt(experiment, salt):
    Experiment.objects.filter(pk=experiment.pk).update(salt=salt)
    experiment.refresh_from_db()
    return experiment


def test_a_planted_lift_is_detected_and_an_aa_run_is_not(served_shop, feeds):
    project = served_shop
    home, trending = feeds
    experiment = fixed_salt(ab(project, feeds), "planted")
    experiments.start_experiment(experiment=experiment)
    summary = experiments.simulate_traffic(
        experiment=experiment, users=500, ctr_lift=0.5, base_ctr=0.08, num_results=20, seed=1
    )
    assert sum(s["users"] for s in summary.values()) == 500
    results = experiments.experiment_results(experiment)
    ctr = next(c for c in results["analysis"]["comparisons"] if c.metric == "CTR")
    assert ctr.significant, ctr.verdict
    assert ctr.verdict.startswith("b's CTR is higher than control's")
    assert 0.3 < ctr.relative_lift < 0.7  # planted +50%
    assert not results["split"]["mismatch"]

    aa = experiments.create_experiment(
        project=project,
        name="aa-test",
        variants=[VariantInput("control", home, 1, True), VariantInput("b", home, 1)],
    )
    aa = fixed_salt(aa, "aa")
    experiments.start_experiment(experiment=aa)
    experiments.simulate_traffic(
        experiment=aa, users=500, ctr_lift=0.0, base_ctr=0.08, num_results=20, seed=2
    )
    aa_results = experiments.experiment_results(aa)
    for comparison in aa_results["analysis"]["comparisons"]:
        assert comparison.enough_data and not comparison.significant, comparison.verdict
        assert comparison.verdict.startswith("No significant difference")


def test_the_management_command(served_shop, feeds):
    experiment = ab(served_shop, feeds)
    with pytest.raises(CommandError, match="start it before simulating"):
        call_command(
            "simulate_experiment", project=served_shop.slug, experiment="home-test", users=5
        )
    with pytest.raises(CommandError, match="No experiment “nope”"):
        call_command("simulate_experiment", project=served_shop.slug, experiment="nope", users=5)
    experiments.start_experiment(experiment=experiment)
    out = StringIO()
    call_command(
        "simulate_experiment",
        project=served_shop.slug,
        experiment="home-test",
        users=30,
        ctr_lift=0.2,
        seed=5,
        stdout=out,
    )
    assert "home-test:control:" in out.getvalue() and "Done" in out.getvalue()
    results = experiments.experiment_results(experiment)
    assert sum(r.users for r in results["variants"]) == 30
    assert sum(r.impressions for r in results["variants"]) == 300


# --------------------------------------------------------------------------- pages


def test_members_create_and_run_an_experiment_on_the_pages(client, user, project, feeds):
    home, trending = feeds
    client.force_login(user)
    url = reverse("experiments", args=[project.slug])
    page = client.get(url).content.decode()
    assert 'id="create-experiment"' in page and "home-trending" in page
    bad = client.post(url, {"name": "t", "variant_feed_0": home.pk, "control": "0"})
    assert bad.status_code == 400
    assert "at least two variants" in bad.content.decode()
    response = client.post(
        url,
        {
            "name": "home-test",
            "description": "trending slot",
            "variant_name_0": "control",
            "variant_feed_0": home.pk,
            "variant_weight_0": "1",
            "variant_name_1": "b",
            "variant_feed_1": trending.pk,
            "variant_weight_1": "3",
            "control": "0",
        },
    )
    detail = reverse("experiment-detail", args=[project.slug, "home-test"])
    assert response.status_code == 302 and response.url == detail
    page = client.get(detail).content.decode()
    assert "Draft" in page and "No impression yet" in page and ">Start</button>" in page
    response = client.post(reverse("experiment-action", args=[project.slug, "home-test", "start"]))
    assert response.status_code == 302
    page = client.get(detail).content.decode()
    assert "is running" in page and ">Pause</button>" in page
    assert "75.0%" in page  # expected share of b
    client.post(reverse("experiment-weights", args=[project.slug, "home-test"]), {"weight_b": "1"})
    assert Experiment.objects.get().variants.get(name="b").weight == 1
    client.post(reverse("experiment-action", args=[project.slug, "home-test", "stop"]))
    page = client.get(detail).content.decode()
    assert "Stopped" in page and ">Start</button>" not in page
    response = client.post(reverse("experiment-action", args=[project.slug, "home-test", "start"]))
    assert "a stopped experiment is final" in client.get(detail).content.decode()
    assert "home-test" in client.get(url).content.decode()


def test_viewers_read_and_non_members_get_404(client, project, feeds, make_user):
    experiment = ab(project, feeds)
    viewer = make_user("victor")
    Membership.objects.create(project=project, user=viewer, role=Membership.Role.VIEWER)
    client.force_login(viewer)
    url = reverse("experiments", args=[project.slug])
    detail = reverse("experiment-detail", args=[project.slug, experiment.name])
    page = client.get(url).content.decode()
    assert "You are a viewer" in page and 'id="create-experiment"' not in page
    assert client.post(url, {"name": "x"}).status_code == 403
    page = client.get(detail).content.decode()
    assert "Assignment check" in page and ">Start</button>" not in page
    start = reverse("experiment-action", args=[project.slug, experiment.name, "start"])
    assert client.post(start).status_code == 403
    experiment.refresh_from_db()
    assert experiment.status == "draft"
    assert client.get(reverse("experiment-detail", args=[project.slug, "nope"])).status_code == 404

    client.force_login(make_user("mallory"))
    assert client.get(url).status_code == 404
    assert client.get(detail).status_code == 404
    assert client.post(start).status_code == 404
