"""Create an A/B experiment of two feeds in the browser, start it, drive simulated traffic
with a planted lift through the serving path, and read the results chart and verdict."""

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import Membership
from datasets.services import create_project
from feeds import catalog as catalog_module
from feeds import recommending, selectors
from feeds.models import Experiment, Feed, FeedSlot
from models_app import services, serving


@pytest.fixture
def shop(user, tmp_path, settings):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    serving.clear_cache()
    catalog_module.clear_cache()
    recommending.clear_caches()
    selectors.clear_popularity_cache()
    project = create_project(name="Experiment shop", owner=user)
    files = generate_demo_shop(tmp_path, n_users=200, n_items=150, n_interactions=6_000)["files"]
    for kind in ("items", "interactions"):
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", job.error
    solution = services.create_solution(project=project, recipe="popularity-count")
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    services.create_campaign(project=project, name="default", version=run.version)
    for name in ("home", "home-trending"):
        feed = Feed.objects.create(project=project, name=name)
        FeedSlot.objects.create(feed=feed, position=1, source="campaign:default", count=10)
    return project


def test_run_an_experiment_and_see_the_results_chart(page, user, log_in, shop, screenshot):
    log_in(user)
    page.goto(f"/p/{shop.slug}/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Experiments").click()
    expect(page.locator("#no-experiments")).to_be_visible()

    form = page.locator("#create-experiment")
    form.get_by_label("Name", exact=True).fill("home-test")
    form.get_by_label("Description (optional)").fill("Does the trending feed get more clicks?")
    form.get_by_label("Variant 1 feed").select_option(label="home")
    form.get_by_label("Variant 2 feed").select_option(label="home-trending")
    expect(form.get_by_label("Variant 1 is the control")).to_be_checked()
    screenshot("experiments-create")
    form.get_by_role("button", name="Create experiment").click()
    expect(page.locator(".message.success")).to_contain_text("created as a draft")
    expect(page.locator("#status")).to_have_text("Draft")
    expect(page.locator("#no-results")).to_be_visible()

    page.get_by_role("button", name="Start").click()
    expect(page.locator(".message.success")).to_contain_text("is running")
    expect(page.locator("#status")).to_have_text("Running")

    experiment = Experiment.objects.get(project=shop, name="home-test")
    Experiment.objects.filter(pk=experiment.pk).update(salt="browser-test")
    call_command(
        "simulate_experiment",
        project=shop.slug,
        experiment="home-test",
        users=500,
        ctr_lift=0.5,
        base_ctr=0.08,
        num_results=20,
        seed=3,
    )
    page.reload()
    expect(page.locator("#chart-ctr .main-svg").first).to_be_visible()
    expect(page.locator("#chart-conversion .main-svg").first).to_be_visible()
    # Two bars with error bars in the CTR chart.
    expect(page.locator("#chart-ctr g.point")).to_have_count(2)
    expect(page.locator("#chart-ctr g.errorbar")).to_have_count(2)
    ctr_verdict = page.locator('#verdicts li[data-variant="b"][data-metric="CTR"]')
    expect(ctr_verdict).to_contain_text("b's CTR is higher than control's")
    expect(ctr_verdict.locator(".badge")).to_have_text("significant")
    expect(page.locator("#split-verdict")).to_contain_text("matches the configured weights")
    users = [
        int(page.locator(f'#variants tr[data-variant="{v}"] td.users').inner_text())
        for v in ("control", "b")
    ]
    assert sum(users) == 500 and min(users) > 200
    screenshot("experiments-results")
    page.set_viewport_size({"width": 820, "height": 900})
    page.reload()
    expect(page.locator("#chart-ctr .main-svg").first).to_be_visible()
    screenshot("experiments-results-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.reload()

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_have_text("Paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#status")).to_have_text("Running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status")).to_have_text("Stopped")
    expect(page.get_by_role("button", name="Start")).to_have_count(0)
    # The results stay after stopping.
    expect(page.locator("#chart-ctr .main-svg").first).to_be_visible()


def test_viewers_see_results_without_buttons(page, log_in, shop, make_user, screenshot):
    viewer = make_user("victor")
    Membership.objects.create(project=shop, user=viewer, role=Membership.Role.VIEWER)
    from feeds import experiments

    home, trending = Feed.objects.filter(project=shop).order_by("name")
    experiments.create_experiment(
        project=shop,
        name="viewer-test",
        variants=[
            experiments.VariantInput("control", home, 1, True),
            experiments.VariantInput("b", trending, 1),
        ],
    )
    log_in(viewer)
    page.goto(f"/p/{shop.slug}/experiments/")
    expect(page.locator("#viewer-note")).to_be_visible()
    expect(page.locator("#create-experiment")).to_have_count(0)
    expect(page.locator('#experiments tr[data-experiment="viewer-test"]')).to_contain_text("Draft")
    screenshot("experiments-list-viewer")
    page.get_by_role("link", name="viewer-test").click()
    expect(page.locator("#status")).to_have_text("Draft")
    expect(page.get_by_role("button", name="Start")).to_have_count(0)
    expect(page.locator("#assignment-check")).to_contain_text("Expected share")


@pytest.fixture
def segmented_shop(shop, tmp_path):
    """The shop with its users imported and a k-means run (k = 3) saved as SEGMENT."""
    from graphs import services as graph_services

    files = generate_demo_shop(tmp_path / "users", n_users=200, n_items=150, n_interactions=6_000)
    job = imports.import_file(project=shop, kind="users", path=files["files"]["users"])
    assert job.status == "succeeded", job.error
    run = graph_services.run_clustering(
        graph_services.start_clustering_run(
            project=shop, method="kmeans-behaviour", params={"k_min": 3, "k_max": 3}, enqueue=False
        )
    )
    assert run.status == "succeeded", run.error
    graph_services.save_segment_field(run=run, field="SEGMENT")
    return shop


def test_an_experiment_for_one_segment(page, user, log_in, segmented_shop, screenshot):
    from datasets.models import EndUser
    from feeds import experiments

    shop = segmented_shop
    segments = {
        u: a["SEGMENT"]
        for u, a in EndUser.objects.filter(project=shop).values_list("external_id", "attributes")
        if "SEGMENT" in a
    }
    inside = sorted(u for u, s in segments.items() if s == "1")
    total = EndUser.objects.filter(project=shop).count()
    log_in(user)
    page.goto(f"/p/{shop.slug}/experiments/")
    form = page.locator("#create-experiment")
    form.get_by_label("Name", exact=True).fill("segment-test")
    form.get_by_label("Variant 1 feed").select_option(label="home")
    form.get_by_label("Variant 2 feed").select_option(label="home-trending")
    values = form.locator('fieldset[data-field="SEGMENT"]')
    expect(values).to_be_hidden()
    form.get_by_label("Target users").select_option(label="Users whose SEGMENT is …")
    expect(values).to_be_visible()
    expect(values.get_by_role("checkbox")).to_have_count(3)
    values.get_by_label("1", exact=True).check()
    screenshot("experiments-create-targeted")
    form.get_by_role("button", name="Create experiment").click()
    expect(page.locator(".message.success")).to_contain_text("created as a draft")
    target = page.locator("#target")
    expect(target).to_contain_text("Targets users whose SEGMENT is 1")
    expect(target).to_contain_text(f"{len(inside)} of {total} users are in the target")

    page.get_by_role("button", name="Start").click()
    expect(page.locator("#status")).to_have_text("Running")
    experiment = Experiment.objects.get(project=shop, name="segment-test")
    summary = experiments.simulate_traffic(
        experiment=experiment, users=0, user_ids=sorted(segments), base_ctr=0.1, seed=1
    )
    assert summary["not enrolled"]["users"] == len(segments) - len(inside)
    page.reload()
    users = [
        int(page.locator(f'#variants tr[data-variant="{v}"] td.users').inner_text())
        for v in ("control", "b")
    ]
    assert sum(users) == len(inside)  # only the segment's users are counted
    expect(page.locator("#chart-ctr .main-svg").first).to_be_visible()
    screenshot("experiments-targeted-results")
    page.get_by_role("link", name="← All experiments").click()
    expect(page.locator('tr[data-experiment="segment-test"] .target')).to_have_text(
        "only SEGMENT = 1"
    )
