"""The Segments pages: forms and their messages, run pages with the quality charts, saving a
segment field, the follow-source preview, and who may see and change what."""

import json
from pathlib import Path

import pytest

from datasets import imports
from datasets.models import EndUser, Membership
from graphs import services
from graphs.models import ClusteringRun, GraphRun

SHOP_SIZE = {"n_users": 300, "n_items": 150, "n_interactions": 15_000, "seed": 3}


pytestmark = pytest.mark.usefixtures("data_dirs")


@pytest.fixture
def shop(project, shop_files):
    for kind in ("users", "items", "interactions", "relations"):
        job = imports.import_file(project=project, kind=kind, path=shop_files[kind])
        assert job.status == "succeeded", job.error
    return project


def figures(response) -> dict:
    """The Plotly figures embedded in a page, by element id."""
    html = response.content.decode()
    out = {}
    for chunk in html.split('<script id="')[1:]:
        element, rest = chunk.split('"', 1)
        body = rest.split(">", 1)[1].split("</script>", 1)[0]
        if element.endswith("-data"):
            out[element.removesuffix("-data")] = json.loads(body)
    return out


@pytest.mark.django_db
def test_empty_project_says_what_to_import(logged_in_client, project):
    response = logged_in_client.get(f"/p/{project.slug}/segments/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "No relations imported yet" in html and f"/p/{project.slug}/data/" in html
    assert 'id="clustering-form"' in html and 'id="graph-form"' in html
    assert ">Segments</a>" in html  # the nav link

    response = logged_in_client.post(f"/p/{project.slug}/segments/", {"action": "graph"})
    assert response.status_code == 400
    assert "No relations imported yet" in response.content.decode()
    response = logged_in_client.post(
        f"/p/{project.slug}/segments/", {"action": "clustering", "method": "louvain"}
    )
    assert response.status_code == 400 and not ClusteringRun.objects.exists()


@pytest.mark.django_db
def test_k_larger_than_users_is_refused_on_the_page(logged_in_client, shop):
    response = logged_in_client.post(
        f"/p/{shop.slug}/segments/",
        {"action": "clustering", "method": "kmeans-behaviour", "k_min": "400", "k_max": "400"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "must be between 2 and 30" in html
    response = logged_in_client.post(
        f"/p/{shop.slug}/segments/",
        {"action": "clustering", "method": "kmeans-graph", "k_min": "29", "k_max": "3"},
    )
    assert "smaller than the smallest k" in response.content.decode()
    assert 'value="29"' in response.content.decode()  # the form keeps what was typed


@pytest.mark.django_db
def test_clustering_run_page_shows_the_quality_charts_and_saves_segments(logged_in_client, shop):
    response = logged_in_client.post(
        f"/p/{shop.slug}/segments/",
        {"action": "clustering", "method": "kmeans-behaviour", "k_min": "2", "k_max": "8"},
    )
    run = ClusteringRun.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(
        f"/segments/clustering/{run.pk}/"
    )
    page = logged_in_client.get(response["Location"])
    assert 'id="progress-panel"' in page.content.decode()  # queued: live progress
    services.run_clustering(run)
    page = logged_in_client.get(f"/p/{shop.slug}/segments/clustering/{run.pk}/")
    html = page.content.decode()
    assert "vendor/plotly.min.js" in html
    charts = figures(page)
    assert {"chart-silhouette-k", "chart-silhouette-clusters", "chart-sizes"} <= set(charts)
    chosen = [t for t in charts["chart-silhouette-k"]["data"] if "chosen" in t["name"]]
    assert chosen[0]["x"] == [run.k] == [6]
    assert len(charts["chart-silhouette-clusters"]["data"]) == 6
    assert "Segment 0 · " in html and 'id="profiles"' in html

    response = logged_in_client.post(
        f"/p/{shop.slug}/segments/clustering/{run.pk}/save/", {"field": "SEGMENT"}, follow=True
    )
    assert "300 users now have SEGMENT" in response.content.decode()
    assert EndUser.objects.filter(project=shop, attributes__has_key="SEGMENT").count() == 300
    response = logged_in_client.post(
        f"/p/{shop.slug}/segments/clustering/{run.pk}/save/", {"field": "GENDER"}, follow=True
    )
    assert "already have a field GENDER" in response.content.decode()

    listing = logged_in_client.get(f"/p/{shop.slug}/segments/").content.decode()
    assert f"/segments/clustering/{run.pk}/" in listing and "<code>SEGMENT</code>" in listing


@pytest.mark.django_db
def test_louvain_and_graph_pages(logged_in_client, shop):
    run = services.run_clustering(
        services.start_clustering_run(project=shop, method="louvain", enqueue=False)
    )
    page = logged_in_client.get(f"/p/{shop.slug}/segments/clustering/{run.pk}/")
    charts = figures(page)
    assert {"chart-modularity", "chart-sizes", "chart-graph"} <= set(charts)
    assert len(charts["chart-graph"]["data"]) >= 2  # edges + at least one community

    graph = services.run_graph(services.start_graph_run(project=shop, enqueue=False))
    page = logged_in_client.get(f"/p/{shop.slug}/segments/graph/{graph.pk}/")
    html = page.content.decode()
    assert "Betweenness: exact" in html and 'id="input-report"' in html
    assert 'id="top-pagerank"' in html and 'id="effect-table"' in html
    assert "segment-affinity" in html and "follow source alone" in html
    assert {"chart-pagerank", "chart-betweenness", "chart-graph", "chart-effect"} <= set(
        figures(page)
    )
    progress = logged_in_client.get(
        f"/p/{shop.slug}/segments/graph/{graph.pk}/progress/?watching=1"
    )
    assert progress["HX-Refresh"] == "true"


@pytest.mark.django_db
def test_follow_source_preview(logged_in_client, shop):
    from datasets.models import Relation

    follower = Relation.objects.filter(project=shop).select_related("follower").first().follower
    html = logged_in_client.get(
        f"/p/{shop.slug}/segments/?follow_user={follower.external_id}"
    ).content.decode()
    assert 'id="follow-preview"' in html and "you follow" in html
    html = logged_in_client.get(f"/p/{shop.slug}/segments/?follow_user=nobody").content.decode()
    assert 'id="follow-preview-empty"' in html


@pytest.mark.django_db
def test_non_members_get_404_and_viewers_read_only(client, shop, other_user):
    run = services.run_clustering(
        services.start_clustering_run(project=shop, method="louvain", enqueue=False)
    )
    client.force_login(other_user)
    for url in (
        f"/p/{shop.slug}/segments/",
        f"/p/{shop.slug}/segments/clustering/{run.pk}/",
        f"/p/{shop.slug}/segments/clustering/{run.pk}/progress/",
    ):
        assert client.get(url).status_code == 404
    assert client.post(f"/p/{shop.slug}/segments/clustering/{run.pk}/save/").status_code == 404

    Membership.objects.create(project=shop, user=other_user, role=Membership.Role.VIEWER)
    html = client.get(f"/p/{shop.slug}/segments/").content.decode()
    assert 'id="read-only"' in html and 'id="clustering-form"' not in html
    page = client.get(f"/p/{shop.slug}/segments/clustering/{run.pk}/").content.decode()
    assert "chart-modularity" in page and "Save as segment field</button>" not in page
    assert client.post(f"/p/{shop.slug}/segments/", {"action": "graph"}).status_code == 403
    save = client.post(f"/p/{shop.slug}/segments/clustering/{run.pk}/save/", {"field": "S"})
    assert save.status_code == 403
    assert client.post(f"/p/{shop.slug}/segments/clustering/{run.pk}/retry/").status_code == 403
    assert not GraphRun.objects.exists()
    assert not EndUser.objects.filter(project=shop, attributes__has_key="S").exists()
    # Another project's run is not reachable through this project's URL.
    assert client.get(f"/p/{shop.slug}/segments/clustering/{run.pk + 1}/").status_code == 404
    assert client.get(f"/p/{shop.slug}/segments/other/{run.pk}/progress/").status_code == 404
    assert Path(services.run_dir(run)).exists()
