"""AutoML: validating its parameters, planning trials, choosing the best, and whole runs through
the service, the command line and the pages on a small generated demo shop."""

import pytest
from django.core.management import CommandError, call_command

from models_app import automl, services, training
from models_app.automl import AutoMLConfig, plan_trials, run_search
from models_app.models import ModelVersion, Solution, TrainingRun

SHOP_SIZE = {"n_users": 300, "n_items": 200, "n_interactions": 20_000, "seed": 5}
FAST = {"recipes": ["item-knn", "popularity-count", "ease"], "max_trials": 5}


# --- Django-free: configuration, plan and search ----------------------------------------------


def test_defaults_are_documented_values():
    config = AutoMLConfig.from_params({})
    assert config.as_params() == {
        "metric": "ndcg@10",
        "recipes": ["user-personalization", "ease", "item-knn", "popularity-count"],
        "max_trials": 12,
        "seed": 0,
    }
    assert AutoMLConfig.from_params({"recipes": "ease, item-knn"}).recipes == ("ease", "item-knn")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"metric": "auc"}, "cannot optimise 'auc'; choose one of ndcg@5"),
        ({"recipes": ["item-knn", "magic"]}, "unknown recipe 'magic'. Valid recipes: content"),
        ({"recipes": ["automl"]}, 'cannot contain "automl" itself'),
        ({"recipes": []}, "non-empty list of recipe names"),
        ({"recipes": ["ease", "ease"]}, "lists a recipe twice"),
        ({"max_trials": 0}, "whole number from 1 to 100, got 0"),
        ({"max_trials": 2.5}, "whole number from 1 to 100"),
        ({"seed": -1}, "non-negative whole number"),
        ({"trials": 3}, "no parameter 'trials'; valid parameters: metric, recipes"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_parameters_are_refused_with_what_to_fix(params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        AutoMLConfig.from_params(params)


def test_plan_tries_defaults_first_then_seeded_grid_points_within_max_trials():
    config = AutoMLConfig.from_params({"recipes": ["item-knn", "ease"], "max_trials": 6})
    trials, notes = plan_trials(config, n_items=500)
    assert notes == [] and len(trials) == 6
    assert [(t.recipe, t.params) for t in trials[:2]] == [("item-knn", {}), ("ease", {})]
    assert {t.recipe for t in trials[2:]} == {"item-knn", "ease"}  # taken in turn
    keys = [(t.recipe, tuple(sorted(t.params.items()))) for t in trials]
    assert len(set(keys)) == 6  # no configuration twice (defaults not repeated either)
    assert {"n_neighbors": 100, "shrinkage": 10.0} not in [t.params for t in trials]
    again, _ = plan_trials(config, n_items=500)
    assert [t.params for t in again] == [t.params for t in trials]
    other, _ = plan_trials(AutoMLConfig.from_params({**config.as_params(), "seed": 1}), 500)
    assert [t.params for t in other] != [t.params for t in trials]
    # A grid smaller than max_trials: every point once, then stop.
    small, _ = plan_trials(AutoMLConfig.from_params({"recipes": ["ease"], "max_trials": 50}), 10)
    assert len(small) == 3  # defaults (l2=250) + l2 50 and 1000


def test_ease_is_skipped_above_its_max_items():
    config = AutoMLConfig.from_params({"recipes": ["ease", "item-knn"], "max_trials": 3})
    trials, notes = plan_trials(config, n_items=25_000)
    assert {t.recipe for t in trials} == {"item-knn"} and len(trials) == 3
    assert "Skipping ease: the catalogue has 25,000 items, above its max_items" in notes[0]
    with pytest.raises(ValueError, match="no recipe it can run"):
        plan_trials(AutoMLConfig.from_params({"recipes": ["ease"]}), n_items=25_000)


def fake_score(values):
    """A scorer returning the given metric values per recipe (and recording calls)."""
    calls = []

    def score(recipe, params):
        calls.append((recipe, params))
        value = values[recipe]
        if isinstance(value, Exception):
            raise value
        bonus = 0.001 * params.get("n_neighbors", 0) / 200
        return {"ndcg@10": value + bonus, "recall@10": 1 - value}

    return score, calls


def test_search_marks_the_best_by_the_chosen_metric_and_keeps_failed_trials():
    score, calls = fake_score(
        {"item-knn": 0.30, "popularity-count": 0.10, "ease": ValueError("boom")}
    )
    lines = []
    config = AutoMLConfig.from_params({**FAST, "max_trials": 7})
    trials = run_search(config, score, n_items=100, log=lambda m, f: lines.append((m, f)))
    assert len(trials) == len(calls) == 7
    chosen = [t for t in trials if t.chosen]
    assert len(chosen) == 1 and chosen[0].recipe == "item-knn"
    best = max(t.value for t in trials if t.value is not None)
    # The best value wins (not merely the first trial); on a tie, the earlier trial.
    assert chosen[0].value == best > trials[0].value
    assert chosen[0] is next(t for t in trials if t.value == best)
    failed = [t for t in trials if t.recipe == "ease"]
    assert failed and all(t.error == "boom" and t.value is None for t in failed)
    assert sum("Trial " in m for m, _ in lines) == 7
    assert "AutoML chose item-knn" in lines[-1][0]
    fractions = [f for _, f in lines]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    as_dicts = [t.as_dict(config.metric) for t in trials]
    assert {"recipe", "params", "metric", "value", "seconds", "chosen"} <= set(as_dicts[0])

    # Another metric, another winner.
    recall = AutoMLConfig.from_params({**FAST, "metric": "recall@10", "max_trials": 3})
    trials = run_search(recall, score, n_items=100)
    assert next(t for t in trials if t.chosen).recipe == "popularity-count"


def test_search_fails_clearly_when_every_trial_fails():
    score, _ = fake_score({"ease": ValueError("no"), "item-knn": ValueError("nope")})
    config = AutoMLConfig.from_params({"recipes": ["ease", "item-knn"], "max_trials": 2})
    with pytest.raises(ValueError, match="Every AutoML trial failed.*ease: no; item-knn: nope"):
        run_search(config, score, n_items=100)


def test_cancel_stops_between_trials():
    score, calls = fake_score({"item-knn": 0.3, "popularity-count": 0.1, "ease": 0.2})

    def check_cancel():
        if len(calls) == 2:
            raise training.TrainingCancelled

    with pytest.raises(training.TrainingCancelled):
        run_search(AutoMLConfig.from_params(FAST), score, n_items=100, check_cancel=check_cancel)
    assert len(calls) == 2


# --- through the service ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _own_data_dirs(data_dirs):
    return data_dirs


def train_now(project, recipe, params=None) -> TrainingRun:
    solution = services.create_solution(project=project, recipe=recipe, params=params or {})
    run = services.start_training(solution=solution, enqueue=False)
    return services.run_training(run)


@pytest.mark.django_db
def test_automl_run_records_trials_and_its_choice_beats_popularity(shop):
    run = train_now(shop, "automl", {**FAST, "metric": "ndcg@10"})
    assert run.status == "succeeded", run.error
    version = run.version
    trials = version.trials
    assert len(trials) == FAST["max_trials"]
    chosen = [t for t in trials if t["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["value"] == max(t["value"] for t in trials)
    assert all(t["metric"] == "ndcg@10" and t["seconds"] >= 0 for t in trials)
    # The version is the chosen configuration, evaluated and refitted like any recipe.
    assert version.recipe == chosen[0]["recipe"] != "automl"
    assert version.solution.recipe == "automl"
    for key, value in chosen[0]["params"].items():
        assert version.params[key] == value
    recipe, _, _ = services.load_version(version)
    assert recipe.name == version.recipe
    assert {"ndcg@10", "r:ndcg@10", "automl_seconds"} <= set(version.metrics)
    assert run.log.count("Trial ") == FAST["max_trials"] and "AutoML chose" in run.log

    popular = train_now(shop, "popularity-count")
    assert version.metrics["ndcg@10"] > popular.version.metrics["ndcg@10"]
    assert version.metrics["r:ndcg@10"] > popular.version.metrics["r:ndcg@10"]


@pytest.mark.django_db
def test_bad_automl_parameters_are_refused_before_queueing(shop):
    with pytest.raises(ValueError, match="cannot optimise 'auc'"):
        services.create_solution(project=shop, recipe="automl", params={"metric": "auc"})
    with pytest.raises(ValueError, match="unknown recipe 'magic'"):
        services.create_solution(project=shop, recipe="automl", params={"recipes": ["magic"]})
    solution = Solution.objects.create(project=shop, recipe="automl", params={"max_trials": 0})
    with pytest.raises(ValueError, match="max_trials"):
        services.start_training(solution=solution)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_cancel_between_trials_creates_no_version(shop, monkeypatch):
    solution = services.create_solution(project=shop, recipe="automl", params=FAST)
    run = services.start_training(solution=solution, enqueue=False)
    calls = []
    original = automl.score_trial

    def score_then_cancel(score, trial):  # the user presses Cancel during the first trial
        calls.append(trial)
        (services.run_dir(run) / "cancel").touch()
        return original(score, trial)

    monkeypatch.setattr(automl, "score_trial", score_then_cancel)
    run = services.run_training(run)
    assert run.status == "cancelled"
    assert len(calls) == 1 and "Trial 1/5" in run.log and "Trial 2/5" not in run.log
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_command_line_automl(shop, capsys):
    call_command(
        "train", "--project", shop.slug, "--recipe", "automl", "--param", "metric=recall@10",
        "--param", "recipes=item-knn,popularity-count", "--param", "max_trials=3", "--wait",
    )  # fmt: skip
    out = capsys.readouterr().out
    version = ModelVersion.objects.get()
    assert version.solution.params["metric"] == "recall@10" and len(version.trials) == 3
    assert "AutoML trials (3), best first:" in out and "recall@10" in out
    chosen_line = next(line for line in out.splitlines() if line.strip().startswith("*"))
    assert version.recipe in chosen_line
    with pytest.raises(CommandError, match="cannot optimise 'auc'"):
        call_command("train", "--project", shop.slug, "--recipe", "automl", "--param", "metric=auc")


@pytest.mark.django_db
def test_train_form_offers_automl_and_the_run_page_shows_the_leaderboard(shop, logged_in_client):
    url = f"/p/{shop.slug}/models/"
    page = logged_in_client.get(url).content.decode()
    assert 'value="automl"' in page and 'name="automl_metric"' in page
    for metric in automl.FORM_METRICS:
        assert f'<option value="{metric}"' in page

    response = logged_in_client.post(
        url,
        {
            "recipe": "automl",
            "automl_metric": "hit@10",
            "params": '{"recipes": ["item-knn", "popularity-count"], "max_trials": 3}',
        },
    )
    assert response.status_code == 302
    run = TrainingRun.objects.get()
    assert run.solution.params == {
        "recipes": ["item-knn", "popularity-count"],
        "max_trials": 3,
        "metric": "hit@10",
    }
    progress = logged_in_client.get(f"{url}runs/{run.pk}/progress/").content.decode()
    assert "AutoML scores each candidate" in progress
    run = services.run_training(run)
    assert run.status == "succeeded", run.error
    page = logged_in_client.get(f"{url}runs/{run.pk}/").content.decode()
    assert "AutoML leaderboard" in page and page.count('class="badge ok">chosen') == 1
    assert "Validation hit@10" in page and "Protocol R" in page
    assert page.index('class="badge ok">chosen') < page.index('<td class="num">2</td>')

    response = logged_in_client.post(
        url, {"recipe": "automl", "automl_metric": "auc", "params": "{}"}
    )
    assert response.status_code == 400 and "cannot optimise" in response.content.decode()
    assert TrainingRun.objects.count() == 1
