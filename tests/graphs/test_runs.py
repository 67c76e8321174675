"""Graph analyses, clustering runs, segments on users and the follow source, end to end.

The data is a generated demo shop (users, items, interactions, relations) imported the way
users import it; the runs must find the segments and communities planted in it.
"""

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from datasets import imports
from datasets.ingest.demo import generate_demo_shop
from datasets.models import EndUser, Interaction, Relation
from datasets.services import create_project
from feeds import selectors as feed_selectors
from feeds.engine.filters import compile_filter
from graphs import services
from graphs.analysis import compare_partitions
from graphs.models import ClusteringRun, GraphRun
from tests.helpers import committed_shop, running_worker

SHOP_SIZE = {"n_users": 600, "n_items": 300, "n_interactions": 40_000, "seed": 1}
KINDS = ("users", "items", "interactions", "relations")


@pytest.fixture(scope="module")
def shop_files(tmp_path_factory):
    return generate_demo_shop(tmp_path_factory.mktemp("shop"), **SHOP_SIZE)["files"]


@pytest.fixture(scope="module")
def truth(shop_files):
    return json.loads(Path(shop_files["ground_truth"]).read_text())


@pytest.fixture(autouse=True)
def data_dirs(settings, tmp_path):
    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return tmp_path


def import_shop(project, files, kinds=KINDS):
    for kind in kinds:
        job = imports.import_file(project=project, kind=kind, path=files[kind])
        assert job.status == "succeeded", (kind, job.error)
    return project


@pytest.fixture(scope="module")
def module_shop(django_db_setup, django_db_blocker, shop_files, tmp_path_factory):
    """The shop with its follower relations imported once for the module (committed; each
    test's runs and segments are rolled back)."""
    folder = tmp_path_factory.mktemp("graphs")
    with committed_shop(
        django_db_blocker,
        folder,
        shop_files,
        build=lambda project: import_shop(project, shop_files, kinds=["relations"]),
    ) as made:
        yield made


@pytest.fixture
def shop(module_shop):
    return module_shop[1]


def cluster_now(project, method, **params) -> ClusteringRun:
    run = services.start_clustering_run(
        project=project, method=method, params=params, enqueue=False
    )
    return services.run_clustering(run)


def graph_now(project, **params) -> GraphRun:
    run = services.start_graph_run(project=project, params=params, enqueue=False)
    return services.run_graph(run)


def planted_segments(truth) -> dict:
    return truth["user_segment"]


def planted_communities(truth) -> dict:
    return {u: name for name, users in truth["communities"].items() for u in users}


# --- clustering runs -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_kmeans_on_behaviour_finds_the_planted_segments_and_k(shop, truth):
    run = cluster_now(shop, "kmeans-behaviour", k_min=2, k_max=10)
    assert run.status == "succeeded", run.error
    assert run.k == 6  # silhouette picks the planted number of segments
    assert set(run.quality["silhouette_by_k"]) == {str(k) for k in range(2, 11)}
    best = max(run.quality["silhouette_by_k"].items(), key=lambda kv: kv[1])
    assert int(best[0]) == run.k and run.silhouette == pytest.approx(best[1])
    labels = services.load_labels(run)
    assert compare_partitions(labels, planted_segments(truth))["ari"] >= 0.8
    assert sum(run.sizes) == run.n_users == len(labels) == 600
    assert run.quality["goal_event"] == "purchase"
    # Per-cluster silhouettes are stored for the chart, one band per segment.
    assert set(run.quality["silhouettes"]) == {str(k) for k in range(6)}
    # Each profile's top categories are its planted favourites.
    favourites = {s["name"]: set(s["categories"]) for s in truth["segments"]}
    members = pd.Series(planted_segments(truth))
    for profile in run.profiles:
        planted = members[labels[labels == profile["label"]].index].mode()[0]
        assert set(profile["top_categories"][:2]) == favourites[planted]
        assert profile["name"].startswith(f"Segment {profile['label']} · ")
    assert run.duration_seconds > 0 and run.progress == 1.0
    assert "k-means on" in run.log and "Done." in run.log
    assert services.read_progress(run)["phase"] == "succeeded"


@pytest.mark.django_db
def test_louvain_finds_the_planted_communities(shop, truth):
    run = cluster_now(shop, "louvain", resolution=1.0)
    assert run.status == "succeeded", run.error
    labels = services.load_labels(run)
    placed = labels[labels >= 0]
    assert compare_partitions(placed, planted_communities(truth))["ari"] >= 0.8
    assert run.modularity > 0.3 and run.k == 6
    assert run.quality["unclustered"] == 600 - len(placed)  # the users without edges
    sweep = {row["resolution"]: row for row in run.quality["sweep"]}
    assert 1.0 in sweep and sweep[1.0]["modularity"] == pytest.approx(run.modularity)
    view = run.quality["graph_view"]
    assert 0 < view["shown"] <= 300 and len(view["edges"]) <= 1500
    assert all(node[3] >= 0 for node in view["nodes"])
    # Profiles carry graph stats: most follows stay inside a community.
    assert all(p["edges_inside_share"] > 0.6 for p in run.profiles)


@pytest.mark.django_db
def test_spectral_and_graph_kmeans_runs(shop, truth):
    spectral = cluster_now(shop, "spectral-graph", k_min=5, k_max=7)
    assert spectral.status == "succeeded", spectral.error
    assert spectral.k == 6 and set(spectral.quality["modularity_by_k"]) == {"5", "6", "7"}
    labels = services.load_labels(spectral)
    assert compare_partitions(labels[labels >= 0], planted_communities(truth))["ari"] >= 0.8

    graph_kmeans = cluster_now(shop, "kmeans-graph", k_min=2, k_max=5)
    assert graph_kmeans.status == "succeeded", graph_kmeans.error
    assert 2 <= graph_kmeans.k <= 5 and graph_kmeans.silhouette is not None
    assert graph_kmeans.quality["unclustered"] > 0  # users without edges are not placed


# --- graph analysis ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_graph_analysis_stores_features_summary_and_the_effect_report(shop, truth):
    run = graph_now(shop)
    assert run.status == "succeeded", run.error
    assert run.n_edges == Relation.objects.filter(project=shop).count()
    assert run.n_users == 600
    assert run.report["betweenness"]["method"] == "exact"
    features = services.load_features(run)
    assert len(features) == 600 and features.pagerank.sum() == pytest.approx(1.0)
    top = run.summary["top_pagerank"]
    assert top[0]["pagerank"] == pytest.approx(features.pagerank.max())
    assert run.summary["louvain_modularity"] > 0.3
    effect = run.summary["effect"]
    names = [row["name"] for row in effect["all_users"]]
    assert names[0] == "user-personalization" and "segment-affinity" in names
    for row in effect["all_users"]:
        assert 0 < row["ndcg"] < 1 and 0 <= row["followed_share"] <= 1
    shares = {row["name"]: row["followed_share"] for row in effect["all_users"]}
    # The follow source recommends what followed users did: by construction the share rises.
    assert shares["follow source alone"] > shares["user-personalization"]


@pytest.mark.django_db
def test_graph_analysis_samples_betweenness_above_the_threshold(shop, settings, monkeypatch):
    from graphs.analysis import graph as graph_module

    monkeypatch.setattr(graph_module, "BETWEENNESS_EXACT_MAX_NODES", 100)
    monkeypatch.setattr(
        graph_module.graph_features, "__kwdefaults__",
        {**graph_module.graph_features.__kwdefaults__, "betweenness_exact_max_nodes": 100},
    )  # fmt: skip
    run = graph_now(shop, betweenness_samples=50, measure_effect=False)
    assert run.status == "succeeded", run.error
    assert run.report["betweenness"] == {
        "method": "sampled",
        "k": 50,
        "exact_max_nodes": 100,
        "seed": 0,
    }
    assert "sampled from k = 50" in run.log
    assert "effect" not in run.summary


# --- bad input -----------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.django_db
def test_no_relations_and_k_larger_than_users_are_refused_clearly(project, tmp_path):
    with pytest.raises(ValueError, match="No relations imported yet.*Data page"):
        services.start_graph_run(project=project, enqueue=False)
    with pytest.raises(ValueError, match="No relations imported yet"):
        services.start_clustering_run(project=project, method="louvain", enqueue=False)
    with pytest.raises(ValueError, match="No interactions imported yet"):
        services.start_clustering_run(project=project, method="kmeans-behaviour", enqueue=False)
    rows = "\n".join(f"u{i % 5},i{i % 7},{1_700_000_000 + i}" for i in range(60))
    events = write(tmp_path / "e.csv", "USER_ID,ITEM_ID,TIMESTAMP\n" + rows)
    imports.import_file(project=project, kind="interactions", path=events)
    with pytest.raises(ValueError, match=r"k = 8 is larger than .* 5 users with events"):
        services.start_clustering_run(
            project=project, method="kmeans-behaviour", params={"k_min": 8, "k_max": 9}
        )
    with pytest.raises(ValueError, match="Largest k .* smaller than the smallest"):
        services.start_clustering_run(
            project=project, method="kmeans-behaviour", params={"k_min": 4, "k_max": 3}
        )
    with pytest.raises(ValueError, match="whole number"):
        services.start_clustering_run(
            project=project, method="kmeans-behaviour", params={"k_min": "two"}
        )
    with pytest.raises(ValueError, match="Unknown clustering method"):
        services.start_clustering_run(project=project, method="dbscan")
    assert not ClusteringRun.objects.exists() and not GraphRun.objects.exists()


@pytest.mark.django_db
def test_self_loops_and_dangling_edges_are_reported_and_an_empty_graph_fails(project, tmp_path):
    imports.import_file(
        project=project, kind="users", path=write(tmp_path / "u.csv", "USER_ID\na\nb\nc\nd\n")
    )
    imports.import_file(
        project=project,
        kind="relations",
        path=write(tmp_path / "r.csv", "FOLLOWER_ID,FOLLOWEE_ID\na,b\nb,c\nc,a\nd,a\na,ghost\n"),
    )
    # A self-loop the import would refuse, written by another path (e.g. an old import).
    user_a = EndUser.objects.get(project=project, external_id="a")
    Relation.objects.create(project=project, follower=user_a, followee=user_a)
    run = graph_now(project, measure_effect=False)
    assert run.status == "succeeded", run.error
    report = run.report["input"]
    assert report["self_loops"] == 1 and report["self_loop_examples"] == ["a"]
    assert report["dangling"] == 1 and report["dangling_examples"] == ["ghost"]
    assert report["edges"] == 4
    assert any("self-loop" in m for m in report["messages"])
    assert any("ghost" in m and "dangling" in m for m in report["messages"])
    assert "dangling" in run.log

    Relation.objects.filter(project=project).exclude(follower=user_a, followee=user_a).delete()
    empty = graph_now(project, measure_effect=False)
    assert empty.status == "failed"
    assert "The follower graph is empty" in empty.error and "self-loop" in empty.error
    assert not (services.run_dir(empty) / services.FEATURES_FILE).exists()


# --- segments on users ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_save_as_segment_field_then_filter_on_it(shop, truth):
    run = cluster_now(shop, "kmeans-behaviour", k_min=6, k_max=6)
    written = services.save_segment_field(run=run, field="SEGMENT")
    assert written == 600
    labels = services.load_labels(run)
    stored = dict(EndUser.objects.filter(project=shop).values_list("external_id", "attributes"))
    assert all(stored[u]["SEGMENT"] == str(int(v)) for u, v in labels.items())
    assert all("GENDER" in stored[u] for u in labels.index)  # other attributes are kept
    schema = {f.name: f for f in imports.get_schema(shop, "users")}
    assert schema["SEGMENT"].type == "categorical"
    run.refresh_from_db()
    assert run.saved_fields[0]["field"] == "SEGMENT" and run.saved_fields[0]["users"] == 600

    # A filter on the new field works on the users' stored attributes.
    user = labels.index[0]
    segment = str(int(labels.iloc[0]))
    other = str((int(segment) + 1) % 6)
    items = {"ITEM_ID": ["x", "y"], "CATEGORY": ["Shoes", "Toys"]}
    expression = 'INCLUDE ItemID WHERE Items.CATEGORY IN ("Shoes") IF Users.SEGMENT = "{}"'
    users_schema = {"users": imports.get_schema(shop, "users"), "items": {"CATEGORY": "text"}}
    attributes = feed_selectors.user_attributes(shop, user)
    mine = compile_filter(expression.format(segment), users_schema)
    theirs = compile_filter(expression.format(other), users_schema)
    assert mine.mask(items, user=attributes).tolist() == [True, False]
    assert theirs.mask(items, user=attributes).tolist() == [True, True]

    # A second run may overwrite the segment field; imported fields are protected.
    louvain = cluster_now(shop, "louvain")
    placed = services.save_segment_field(run=louvain, field="segment")  # same field, any case
    attributes = dict(EndUser.objects.filter(project=shop).values_list("external_id", "attributes"))
    with_field = [u for u, a in attributes.items() if "SEGMENT" in a]
    assert len(with_field) == placed < 600  # users without edges lost the field
    run.refresh_from_db()
    assert run.saved_fields[-1] == {"field": "SEGMENT", "replaced_by": louvain.pk}
    with pytest.raises(ValueError, match="already have a field GENDER"):
        services.save_segment_field(run=run, field="GENDER")
    with pytest.raises(ValueError, match="reserved"):
        services.save_segment_field(run=run, field="USER_ID")
    with pytest.raises(ValueError, match="not a valid field name"):
        services.save_segment_field(run=run, field="my segment")


@pytest.mark.django_db
def test_a_failed_run_cannot_be_saved_as_segments(shop):
    run = services.start_clustering_run(project=shop, method="louvain", enqueue=False)
    services.request_cancel(run)
    run.refresh_from_db()
    assert run.status == "cancelled"
    with pytest.raises(ValueError, match="only a succeeded run"):
        services.save_segment_field(run=run)


# --- the follow source ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_followed_users_liked(shop):
    follower = Relation.objects.filter(project=shop).values_list("follower_id", flat=True).first()
    user = EndUser.objects.get(pk=follower)
    results = services.followed_users_liked(shop, user.external_id, k=10)
    assert 0 < len(results) <= 10
    scores = [score for _, score, _ in results]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0)
    followees = list(
        Relation.objects.filter(project=shop, follower_id=follower).values_list(
            "followee_id", flat=True
        )
    )
    seen = set(
        Interaction.objects.filter(project=shop, user_id=follower).values_list(
            "item__external_id", flat=True
        )
    )
    for item, _score, reason in results:
        assert item not in seen
        who = set(
            Interaction.objects.filter(
                project=shop, user_id__in=followees, item__external_id=item
            ).values_list("user_id", flat=True)
        )
        n = len(who)
        assert reason == f"liked by {n} {'person' if n == 1 else 'people'} you follow"
    assert services.followed_users_liked(shop, "nobody-by-that-id", k=5) == []


# --- runs: cancel, retry, stale, a real worker ---------------------------------------------------


@pytest.mark.django_db
def test_cancel_retry_and_fail_stale(shop):
    run = services.start_clustering_run(project=shop, method="louvain", enqueue=False)
    services.request_cancel(run)
    assert run.status == "cancelled" and "before it started" in run.error
    again = services.retry(run)
    assert again.pk != run.pk and again.status == "queued" and again.params == run.params

    # A worker that died mid-run: its heartbeat stops and the run is marked failed.
    ClusteringRun.objects.filter(pk=again.pk).update(status="running")
    files = services.run_files(again)
    files.write_progress(phase="running", fraction=0.3)
    assert services.fail_stale_runs(shop, stale_after=3600) == 0
    progress = json.loads(files.progress_path.read_text())
    progress["at"] = time.time() - 4000
    files.progress_path.write_text(json.dumps(progress))
    assert services.fail_stale_runs(shop, stale_after=3600) == 1
    again.refresh_from_db()
    assert again.status == "failed" and "worker stopped" in again.error

    # A cancel request seen while running stops the run and keeps nothing.
    running = services.start_graph_run(
        project=shop, params={"measure_effect": False}, enqueue=False
    )
    services.run_files(running).request_cancel()
    services.run_graph(running)
    assert running.status == "cancelled"
    assert not (services.run_dir(running) / services.FEATURES_FILE).exists()


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_clustering(shop_files, user, truth, tmp_path, monkeypatch, settings):
    # The worker's ARTIFACT_DIR is this test's; the same SECRET_KEY signs and reads the tasks.
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SECRET_KEY", settings.SECRET_KEY)
    project = import_shop(create_project(name="Worker shop", owner=user), shop_files)
    with running_worker():
        run = services.start_clustering_run(project=project, method="louvain")
        deadline = time.time() + 120
        while time.time() < deadline:
            run.refresh_from_db()
            if run.is_finished:
                break
            time.sleep(0.5)
    assert run.status == "succeeded", run.error or run.log
    assert run.task_id and Path(run.artefact_dir).is_relative_to(tmp_path)
    labels = services.load_labels(run)
    assert compare_partitions(labels[labels >= 0], planted_communities(truth))["ari"] >= 0.8


def test_segment_names():
    assert services.segment_name(2, ["Shoes", "Sports", "Toys"]) == "Segment 2 · Shoes, Sports"
    assert services.segment_name(0, []) == "Segment 0"


@pytest.mark.django_db
def test_command_line(shop):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command(
        "segment_users", project=shop.slug, method="louvain", save_field="SEGMENT", stdout=out
    )
    text = out.getvalue()
    assert "k = 6, modularity" in text and "Saved SEGMENT on" in text
    assert EndUser.objects.filter(project=shop, attributes__has_key="SEGMENT").exists()
    out = StringIO()
    call_command("segment_users", project=shop.slug, method="graph", stdout=out)
    assert "betweenness exact" in out.getvalue()
    with pytest.raises(CommandError, match="No project with slug"):
        call_command("segment_users", project="nope")
    with pytest.raises(CommandError, match="Resolution must be above 0"):
        call_command("segment_users", project=shop.slug, method="louvain", resolution=0)
