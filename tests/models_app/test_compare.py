"""The version comparison page and its charts, plus the Solutions table of the Models page.

Versions are trained for real on a small generated demo shop; a few tests add plain rows
(a run and its version) to the database to have many versions without training each one.
"""

import json
import math
import re

import pytest
from django.urls import reverse
from django_q.models import Schedule

from datasets.services import create_project
from models_app import charts, services
from models_app.models import ModelVersion, Solution, TrainingRun

SHOP_SIZE = {"n_users": 200, "n_items": 120, "n_interactions": 8_000, "seed": 3}


@pytest.fixture(autouse=True)
def _own_data_dirs(data_dirs):
    return data_dirs


def train_now(project, recipe, params=None) -> ModelVersion:
    solution = services.create_solution(project=project, recipe=recipe, params=params or {})
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    return run.version


@pytest.fixture
def two_versions(shop):
    return train_now(shop, "popularity-count"), train_now(shop, "item-knn", {"n_neighbors": 30})


def add_version(project, metrics, *, duration=1.0, memory=100 * 2**20) -> ModelVersion:
    """A version row with the given metrics (its run and solution included)."""
    # A solution of its own each time (create_solution would reuse an identical one).
    solution = Solution.objects.create(project=project, name="pop", recipe="popularity-count")
    run = TrainingRun.objects.create(
        solution=solution,
        project=project,
        status="succeeded",
        duration_seconds=duration,
        peak_memory_bytes=memory,
    )
    return ModelVersion.objects.create(
        project=project, solution=solution, run=run, recipe=solution.recipe, metrics=metrics
    )


def compare_url(project):
    return reverse("models-compare", args=[project.slug])


def figure(response, element_id):
    html = response.content.decode()
    match = re.search(
        rf'<script id="{element_id}-data" type="application/json">(.*?)</script>', html
    )
    assert match, f"no {element_id} figure on the page"
    return json.loads(match.group(1))


def table_row(response, key):
    """The cells of the metrics table's row for ``key``: [(text, highlighted), ...]."""
    html = response.content.decode()
    row = re.search(
        rf"<tr>\s*<td class=\"metric\"><code>{re.escape(key)}</code>.*?</tr>", html, re.S
    )
    assert row, f"no row for {key}"
    cells = re.findall(r'<td class="num( best)?"[^>]*>([^<]*)</td>', row.group(0))
    return [(text, bool(best)) for best, text in cells]


# --- the Django-free charts ---------------------------------------------------------------


def summaries():
    return [
        {
            "label": "#1 popularity-count",
            "metrics": {"ndcg@10": 0.10, "recall@10": 0.2, "novelty@10": 6.5, "ndcg@5": 0.08,
                        "fit_seconds": 0.5, "r:ndcg@10": 0.07, "pop_percentile@10": 0.9},
            "duration_seconds": 2.0,
            "peak_memory_bytes": 200 * 2**20,
        },
        {
            "label": "#2 item-knn",
            "metrics": {"ndcg@10": 0.25, "recall@10": 0.2, "novelty@10": 8.1, "ndcg@5": 0.2,
                        "fit_seconds": 1.5, "r:ndcg@10": 0.21, "pop_percentile@10": 0.6,
                        "hit@10": float("nan")},
            "duration_seconds": 5.0,
            "peak_memory_bytes": 300 * 2**20,
        },
    ]  # fmt: skip


def test_metrics_chart_has_one_bar_per_version_and_one_group_per_metric_at_10():
    fig = charts.metrics_chart(summaries())
    assert [trace["name"] for trace in fig["data"]] == ["#1 popularity-count", "#2 item-knn"]
    first, second = fig["data"]
    assert first["x"] == ["recall@10", "ndcg@10", "pop_percentile@10"]  # ordered; @5 left out
    assert first["y"] == [0.2, 0.10, 0.9] and second["y"] == [0.2, 0.25, 0.6]
    assert fig["layout"]["barmode"] == "group"
    # Novelty (bits) would flatten every other bar: it stays in the table.
    assert fig["layout"]["meta"]["left_out"] == ["novelty@10"]
    json.dumps(fig, allow_nan=False)  # valid JSON for the page: NaN was dropped


def test_protocol_r_metrics_get_their_own_chart():
    fig = charts.metrics_chart(summaries(), protocol_r=True)
    assert fig["data"][0]["x"] == ["ndcg@10"]
    assert [trace["y"] for trace in fig["data"]] == [[0.07], [0.21]]
    assert charts.metric_keys(summaries(), protocol_r=True) == ["r:ndcg@10"]
    plain = [{**s, "metrics": {"ndcg@10": 0.1}} for s in summaries()]
    assert charts.metric_keys(plain, protocol_r=True) == []


def test_resources_chart_shows_duration_and_peak_memory_in_megabytes():
    duration, memory = charts.resources_chart(summaries())["data"]
    assert duration["y"] == [2.0, 5.0]
    assert memory["y"] == [200.0, 300.0] and memory["yaxis"] == "y2"
    no_run = [{"label": "#3 x", "metrics": {}}]
    assert charts.resources_chart(no_run)["data"][1]["y"] == [None]


def test_the_table_marks_the_best_value_by_direction_and_not_ties():
    rows = {row["key"]: row for row in charts.metrics_table(summaries())}
    best = {key: [cell["best"] for cell in row["cells"]] for key, row in rows.items()}
    assert best["ndcg@10"] == [False, True]  # higher is better
    assert best["novelty@10"] == [False, True]
    assert best["fit_seconds"] == [True, False]  # lower is better
    assert best["run duration (s)"] == [True, False]
    assert best["peak memory (MB)"] == [True, False]
    assert best["recall@10"] == [False, False], "a tie highlights nobody"
    assert best["pop_percentile@10"] == [False, False], "popularity bias has no best"
    assert "hit@10" not in rows, "a metric that is NaN everywhere has nothing to show"
    keys = list(rows)
    assert keys.index("ndcg@5") < keys.index("ndcg@10") < keys.index("r:ndcg@10")
    assert keys[-2:] == ["run duration (s)", "peak memory (MB)"]


def test_best_indexes_handles_ties_missing_values_and_a_single_version():
    assert charts.best_indexes([0.3, None, 0.3, 0.1], +1) == {0, 2}
    assert charts.best_indexes([None, 0.5], +1) == set()
    assert charts.best_indexes([math.inf, 0.5, 0.7], -1) == {1}
    assert charts.best_indexes([0.5, 0.7], 0) == set()


# --- the page -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_compare_page_charts_the_chosen_versions_and_highlights_the_best(
    logged_in_client, shop, two_versions
):
    popular, knn = two_versions
    third = train_now(shop, "popularity-count")  # not asked for
    response = logged_in_client.get(compare_url(shop), {"versions": f"{knn.pk},{popular.pk}"})
    assert response.status_code == 200
    fig = figure(response, "chart-metrics")
    names = [trace["name"] for trace in fig["data"]]
    assert names == [f"#{popular.pk} popularity-count", f"#{knn.pk} item-knn"]  # oldest first
    ndcg = fig["data"][0]["x"].index("ndcg@10")
    assert fig["data"][1]["y"][ndcg] == pytest.approx(knn.metrics["ndcg@10"])
    assert f"#{third.pk} " not in response.content.decode()
    resources = figure(response, "chart-resources")
    assert resources["data"][0]["y"] == [popular.run.duration_seconds, knn.run.duration_seconds]

    cells = table_row(response, "ndcg@10")
    values = [popular.metrics["ndcg@10"], knn.metrics["ndcg@10"]]
    assert [text for text, _ in cells] == [f"{v:.4f}" for v in values]
    winner = values.index(max(values))
    assert [best for _, best in cells] == [i == winner for i in range(2)]
    protocol_r = figure(response, "chart-metrics-r")  # training stores ``r:`` metrics too
    ndcg = protocol_r["data"][0]["x"].index("ndcg@10")
    assert protocol_r["data"][1]["y"][ndcg] == pytest.approx(knn.metrics["r:ndcg@10"])
    assert 'src="/static/vendor/plotly.min.js"' in response.content.decode()


@pytest.mark.django_db
def test_checkbox_form_sends_repeated_versions_and_protocol_r_gets_a_chart(
    logged_in_client, project
):
    old = add_version(project, {"ndcg@10": 0.2, "r:ndcg@10": 0.05, "r:recall@10": 0.1})
    new = add_version(project, {"ndcg@10": 0.1, "r:ndcg@10": 0.15, "r:recall@10": 0.3})
    url = f"{compare_url(project)}?versions={new.pk}&versions={old.pk}"
    response = logged_in_client.get(url)
    assert response.status_code == 200
    fig = figure(response, "chart-metrics-r")
    assert [trace["x"] for trace in fig["data"]] == [["recall@10", "ndcg@10"]] * 2
    assert [trace["y"] for trace in fig["data"]] == [[0.1, 0.05], [0.3, 0.15]]
    assert table_row(response, "r:ndcg@10") == [("0.0500", False), ("0.1500", True)]
    assert table_row(response, "ndcg@10") == [("0.2000", True), ("0.1000", False)]
    without_r = add_version(project, {"ndcg@10": 0.3})
    response = logged_in_client.get(compare_url(project), {"versions": without_r.pk})
    assert "chart-metrics-r" not in response.content.decode()


@pytest.mark.django_db
def test_without_versions_the_latest_six_are_compared(logged_in_client, project):
    versions = [add_version(project, {"ndcg@10": i / 10}) for i in range(8)]
    response = logged_in_client.get(compare_url(project))
    assert response.status_code == 200
    names = [trace["name"] for trace in figure(response, "chart-metrics")["data"]]
    assert names == [f"#{v.pk} popularity-count" for v in versions[2:]]


@pytest.mark.django_db
def test_a_project_without_versions_says_so(logged_in_client, project):
    response = logged_in_client.get(compare_url(project))
    assert response.status_code == 200
    assert "No model version to compare" in response.content.decode()


@pytest.mark.django_db
def test_a_version_of_another_project_is_not_found(logged_in_client, user, project):
    mine = add_version(project, {"ndcg@10": 0.1})
    elsewhere = create_project(name="Other shop", owner=user)
    theirs = add_version(elsewhere, {"ndcg@10": 0.2})
    response = logged_in_client.get(compare_url(project), {"versions": f"{mine.pk},{theirs.pk}"})
    assert response.status_code == 404
    assert logged_in_client.get(compare_url(elsewhere), {"versions": theirs.pk}).status_code == 200


@pytest.mark.django_db
def test_a_project_of_someone_else_is_not_found(client, other_user, project):
    add_version(project, {"ndcg@10": 0.1})
    client.force_login(other_user)
    assert client.get(compare_url(project)).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("abc", "Not a model version number: &#x27;abc&#x27;"),
        ("3;drop", "Not a model version number: &#x27;3;drop&#x27;"),
        ("999999", "No model version #999999 in this project"),
        ("-1", "Not a model version number: &#x27;-1&#x27;"),
    ],
)
def test_bad_ids_get_a_clear_message(logged_in_client, project, query, message):
    response = logged_in_client.get(compare_url(project), {"versions": query})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert 'role="alert"' in response.content.decode()


@pytest.mark.django_db
def test_good_ids_are_still_compared_next_to_a_bad_one(logged_in_client, project):
    version = add_version(project, {"ndcg@10": 0.1})
    response = logged_in_client.get(compare_url(project), {"versions": f"{version.pk}, x, 999999"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Not a model version number: &#x27;x&#x27;" in page
    assert "No model version #999999" in page
    names = [trace["name"] for trace in figure(response, "chart-metrics")["data"]]
    assert names == [f"#{version.pk} popularity-count"]


@pytest.mark.django_db
def test_at_most_twelve_versions_are_compared(logged_in_client, project):
    versions = [add_version(project, {"ndcg@10": 0.1}) for _ in range(14)]
    ids = ",".join(str(v.pk) for v in versions)
    response = logged_in_client.get(compare_url(project), {"versions": ids})
    assert response.status_code == 200
    assert "14 versions were asked for; at most 12" in response.content.decode()
    assert len(figure(response, "chart-metrics")["data"]) == 12


# --- the Solutions table of the Models page -----------------------------------------------


@pytest.mark.django_db
def test_solutions_table_sets_retraining_and_retrains_now(logged_in_client, shop, two_versions):
    popular, _ = two_versions
    models_url = reverse("models", args=[shop.slug])
    page = logged_in_client.get(models_url).content.decode()
    assert 'id="solutions"' in page
    assert f'id="solution-{popular.solution_id}"' in page
    assert f"{popular.metrics['ndcg@10']:.4f}" in page

    url = reverse("solution-schedule", args=[shop.slug, popular.solution_id])
    response = logged_in_client.post(url, {"every_hours": "2"}, follow=True)
    assert "will be retrained every 2 hours; next run" in response.content.decode()
    schedule = Schedule.objects.get(name=f"retrain-solution-{popular.solution_id}")
    assert schedule.minutes == 120
    assert "Next run " in response.content.decode()

    response = logged_in_client.post(url, {"every_hours": "5"}, follow=True)
    assert "every 5 hours is not offered" in response.content.decode()
    response = logged_in_client.post(url, {"every_hours": ""}, follow=True)
    assert "Scheduled retraining of “popularity-count” is off." in response.content.decode()
    assert not Schedule.objects.exists()

    retrain = reverse("solution-train", args=[shop.slug, popular.solution_id])
    response = logged_in_client.post(retrain)
    run = TrainingRun.objects.filter(solution_id=popular.solution_id).first()
    assert run.status == "queued"
    assert response.url == reverse("training-run", args=[shop.slug, run.pk])


@pytest.mark.django_db
def test_solutions_of_another_project_cannot_be_scheduled(logged_in_client, user, shop):
    elsewhere = create_project(name="Other shop", owner=user)
    theirs = services.create_solution(project=elsewhere, recipe="popularity-count")
    for name in ("solution-schedule", "solution-train"):
        url = reverse(name, args=[shop.slug, theirs.pk])
        assert logged_in_client.post(url, {"every_hours": "2"}).status_code == 404
    assert not Schedule.objects.exists()
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_solutions_table_does_not_query_per_row(
    logged_in_client, project, django_assert_max_num_queries
):
    url = reverse("models", args=[project.slug])
    for _ in range(3):
        services.set_retraining(add_version(project, {"ndcg@10": 0.1}).solution, 2)
    with django_assert_max_num_queries(40) as few:
        logged_in_client.get(url)
    for _ in range(10):
        services.set_retraining(add_version(project, {"ndcg@10": 0.1}).solution, 6)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = logged_in_client.get(url)
    assert response.content.decode().count('class="help next-run"') == 13
