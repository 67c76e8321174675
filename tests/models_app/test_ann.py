"""The approximate item index (models_app.ann): recall against brute force, exact scores,
saving and loading, and the errors it gives. Django-free."""

import numpy as np
import pytest

from models_app import ann


def clustered(n_items, dim=16, n_users=300, seed=0):
    """ALS-like factors: items around taste centres, with different norms."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim))
    items = centres[rng.integers(0, 64, n_items)] + 0.7 * rng.standard_normal((n_items, dim))
    items *= rng.lognormal(0, 0.3, n_items)[:, None]
    users = centres[rng.integers(0, 64, n_users)] + 0.7 * rng.standard_normal((n_users, dim))
    return items.astype(np.float32), users.astype(np.float32)


def exact_top(items, user, k):
    scores = items @ user
    return set(np.argsort(-scores)[:k].tolist())


def test_recall_against_brute_force_reaches_the_target():
    items, users = clustered(20_000)
    index = ann.ItemIndex.build(items, sample_queries=users[:100], target_recall=0.95)
    assert index.calibrated_recall >= 0.95
    held_out = users[100:]
    recall = np.mean(
        [len(set(index.search(u, 20)[0].tolist()) & exact_top(items, u, 20)) / 20 for u in held_out]
    )
    assert recall >= 0.93  # users the calibration never saw
    assert index.nprobe < index._index.nlist  # and it did not simply scan everything


def test_search_returns_exact_scores_best_first():
    items, users = clustered(5_000)
    index = ann.ItemIndex.build(items, sample_queries=users)
    cols, scores = index.search(users[0], 10)
    assert len(cols) == 10
    np.testing.assert_allclose(scores, items[cols] @ users[0], rtol=1e-5)
    assert np.all(np.diff(scores) <= 0)
    assert cols.dtype == np.int64


def test_k_larger_than_the_catalogue_and_zero():
    items, _ = clustered(100)
    index = ann.ItemIndex.build(items)
    cols, _ = index.search(items[0], 500)
    assert len(set(cols.tolist())) == len(cols) <= 100
    assert len(index.search(items[0], 0)[0]) == 0


def test_a_stricter_target_probes_more_clusters():
    items, users = clustered(20_000, seed=3)
    loose = ann.ItemIndex.build(items, sample_queries=users, target_recall=0.5)
    strict = ann.ItemIndex.build(items, sample_queries=users, target_recall=0.99)
    assert strict.nprobe > loose.nprobe
    assert strict.calibrated_recall >= 0.99 or strict.nprobe == strict._index.nlist


def test_save_and_load_give_the_same_answers(tmp_path):
    items, users = clustered(5_000)
    index = ann.ItemIndex.build(items, sample_queries=users)
    index.save(tmp_path)
    loaded = ann.ItemIndex.load(tmp_path, items)
    assert loaded.nprobe == index.nprobe
    for user in users[:20]:
        np.testing.assert_array_equal(loaded.search(user, 20)[0], index.search(user, 20)[0])


def test_load_without_an_index_and_with_other_factors(tmp_path):
    items, _ = clustered(1_000)
    assert ann.ItemIndex.load(tmp_path, items) is None
    ann.ItemIndex.build(items).save(tmp_path)
    with pytest.raises(ValueError, match="retrain to rebuild it"):
        ann.ItemIndex.load(tmp_path, items[:500])


def test_empty_catalogue_and_bad_shapes():
    with pytest.raises(ValueError, match="empty catalogue"):
        ann.ItemIndex.build(np.zeros((0, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        ann.ItemIndex.build(np.zeros((2, 3, 4), dtype=np.float32))


def test_threshold():
    assert not ann.should_build(ann.THRESHOLD_ITEMS - 1)
    assert ann.should_build(ann.THRESHOLD_ITEMS)


@pytest.mark.django_db
@pytest.mark.parametrize("threshold, built", [(100, True), (10**9, False)])
def test_training_builds_the_index_above_the_threshold(
    project, tmp_path, settings, threshold, built
):
    from pathlib import Path

    from datasets import imports
    from datasets.ingest.demo import generate_demo_shop
    from models_app import services

    settings.UPLOAD_DIR = tmp_path / "uploads"
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.ANN_THRESHOLD_ITEMS = threshold
    files = generate_demo_shop(
        tmp_path / "shop", n_users=200, n_items=150, n_interactions=5_000, seed=1
    )["files"]
    job = imports.import_file(project=project, kind="interactions", path=files["interactions"])
    assert job.status == "succeeded", job.error
    solution = services.create_solution(
        project=project, recipe="user-personalization", params={"factors": 8, "iterations": 3}
    )
    run = services.run_training(services.start_training(solution=solution, enqueue=False))
    assert run.status == "succeeded", run.error
    folder = Path(run.version.artefact_dir)
    assert (folder / ann.INDEX_FILE).exists() is built
    recipe, _, _ = services.load_version(run.version)
    index = ann.ItemIndex.load(folder, recipe.item_factors_)
    if built:
        assert "approximate index" in run.log
        user = recipe.user_factors_[0]
        cols, _ = index.search(user, 10)
        assert len(cols) == 10
        assert len(set(cols.tolist()) & exact_top(recipe.item_factors_, user, 10)) >= 8
    else:
        assert index is None
